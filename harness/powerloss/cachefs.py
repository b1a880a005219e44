"""The power-loss layer's FUSE file system: a pass-through to the live tree plus the durability model.

Why a FUSE file system: under qemu-user the board's "kernel" is the host's, whose page cache survives a
SIGKILL of the target, so nothing the core wrote would ever be lost. This file system sits over the core's
state directory and keeps its own cache (the live tree, on a tmpfs that dies with the target); only what
the core flushed reaches the disk (``durability.DurabilityModel``). Its daemon runs inside the target's
PID namespace, so the power cut that kills the core kills the cache with it.

It also counts writes per file, so a campaign can cut "after the Nth write to config.tlog": the daemon
completes that write, records the cut point in a marker file and stops answering, freezing the core at
exactly that point until the harness cuts the power.

mfusepy (ctypes over Debian's libfuse3) was chosen over pyfuse3: its high-level, path-based API is what the
path-based durability model needs, it runs single-threaded (no locking between operations), and it needs
no compiler or trio event loop in the daemon.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
import time
from typing import Any

import mfusepy

from harness.powerloss.cuts import WriteCut
from harness.powerloss.durability import DurabilityModel

SYNC_FLAGS = os.O_SYNC | os.O_DSYNC
STAT_KEYS = (
    "st_mode",
    "st_ino",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_size",
    "st_atime",
    "st_mtime",
    "st_ctime",
    "st_blocks",
)


def _rel(path: str) -> str:
    return path.strip("/")


class CacheFS(mfusepy.Operations):  # type: ignore[misc]
    """Pass-through to ``model.live``; fsync/fsyncdir make data durable; optional cut after the Nth write."""

    use_ns = True

    def __init__(
        self,
        model: DurabilityModel,
        *,
        write_cut: WriteCut | None = None,
        marker: str = "",
        ready_fd: int = 1,
        journal: bool = False,
    ) -> None:
        self.model = model
        self.write_cut = write_cut
        self.marker = marker
        self.ready_fd = ready_fd
        self.write_counts: dict[str, int] = {}
        self.fh_paths: dict[int, str] = {}
        self.sync_fhs: set[int] = set()
        self.write_through = False
        #: ext4-like ordered journal: metadata commits on every fsync and every commit interval
        self.journal = journal
        self._mutex = threading.RLock()
        self.frozen = threading.Event()

    # -- helpers ------------------------------------------------------------------------------------
    def _l(self, path: str) -> str:
        return self.model.lpath(_rel(path))

    def _owned(self, path: str) -> None:
        """New entries belong to the calling process's user, as on a real file system."""
        uid, gid, _ = mfusepy.fuse_get_context()
        os.lchown(self._l(path), uid, gid)

    def _after_entry_change(self, *paths: str) -> None:
        """Note the change for the journal; after a clean power-off began, write it through."""
        if self.journal:
            self.model.note_entries_changed(*(os.path.dirname(_rel(p)) for p in paths))
        if self.write_through:
            for p in paths:
                self.model.sync_dir(os.path.dirname(_rel(p)))

    # -- lifecycle ----------------------------------------------------------------------------------
    def init(self, path: str) -> None:
        os.write(self.ready_fd, b"READY\n")

    def commit(self) -> None:
        """A journal commit (the timer's): metadata so far becomes durable, data does not."""
        with self._mutex:
            self.model.commit_metadata()

    def flush_all(self) -> None:
        with self._mutex:
            self.model.sync_all()
            self.write_through = True

    # -- metadata -----------------------------------------------------------------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._l(path))
        out: dict[str, Any] = {k: getattr(st, k) for k in STAT_KEYS}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            out[k] = getattr(st, k + "_ns")
        return out

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._l(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._l(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.lchown(self._l(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._l(path), follow_symlinks=False)
        else:
            os.utime(self._l(path), ns=times, follow_symlinks=False)
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self._l(path))

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.model.durable)
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag")
        return {k: getattr(sv, k) for k in (*keys, "f_frsize", "f_namemax")}

    # -- directories --------------------------------------------------------------------------------
    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._l(path))]

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._l(path), mode)
        self._owned(path)
        self._after_entry_change(path, path + "/.")
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._l(path))
        self._after_entry_change(path)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            if self.journal:
                self.model.commit_metadata()
            self.model.sync_dir(_rel(path))
        return 0

    # -- entries ------------------------------------------------------------------------------------
    def mknod(self, path: str, mode: int, dev: int) -> int:
        os.mknod(self._l(path), mode, dev)
        self._owned(path)
        self._after_entry_change(path)
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._l(target))
        self._owned(target)
        self._after_entry_change(target)
        self._count("symlink", _rel(target))
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._l(source), self._l(target))
        self._after_entry_change(target)
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._l(path))
        self._after_entry_change(path)
        self._count("unlink", _rel(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._l(old), self._l(new))
        self.model.note_rename(_rel(old), _rel(new))
        self._after_entry_change(old, new)
        self._count("rename", _rel(new))
        return 0

    # -- files --------------------------------------------------------------------------------------
    def _opened(self, path: str, fd: int, flags: int) -> int:
        self.fh_paths[fd] = _rel(path)
        if flags & SYNC_FLAGS:
            self.sync_fhs.add(fd)
        return fd

    def open(self, path: str, flags: int) -> int:
        fd = os.open(self._l(path), flags & ~SYNC_FLAGS)
        if flags & os.O_TRUNC and self.journal:
            self.model.note_shrunk(os.fstat(fd).st_ino, 0)
        return self._opened(path, fd, flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        flags = int(fi) if isinstance(fi, int) else os.O_RDWR
        fd = os.open(self._l(path), (flags & ~SYNC_FLAGS) | os.O_CREAT, mode)
        self._owned(path)
        self._after_entry_change(path)
        return self._opened(path, fd, flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        n = os.pwrite(fh, data, offset)
        if fh in self.sync_fhs or self.write_through:
            with self._mutex:
                self.model.sync_file(fh)
        self._count("write", self.fh_paths.get(fh, _rel(path)))
        return n

    def _count(self, op: str, rel: str) -> None:
        """Count ``op`` on ``rel``; freeze when it is the cut's."""
        cut = self.write_cut
        if cut is None or cut.op != op or cut.path != rel:
            return
        count = self.write_counts.get(f"{op}:{rel}", 0) + 1
        self.write_counts[f"{op}:{rel}"] = count
        if count == cut.nth:
            self._freeze(cut.label())

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._l(path), length)
        if self.journal:
            st = os.fstat(fh) if fh is not None else os.stat(self._l(path))
            self.model.note_shrunk(st.st_ino, length)
        if self.write_through:
            fd = fh if fh is not None else os.open(self._l(path), os.O_RDONLY)
            with self._mutex:
                self.model.sync_file(fd)
            if fh is None:
                os.close(fd)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            if self.journal:
                self.model.commit_metadata()
            self.model.sync_file(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        self.fh_paths.pop(fh, None)
        self.sync_fhs.discard(fh)
        os.close(fh)
        return 0

    # -- cut points ---------------------------------------------------------------------------------
    def _freeze(self, label: str) -> None:
        """Record the cut point (durably, on the host) and stop answering until the power is cut."""
        if self.journal:
            self.model.commit_metadata()
        if self.marker:
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, (label + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        self.frozen.set()
        while True:  # the power cut kills this process; nothing after it may run
            time.sleep(3600)


def _with_lock(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(self: CacheFS, *args: Any) -> Any:
        with self._mutex:
            return func(self, *args)

    return wrapper


def _locked(cls: type[CacheFS]) -> None:
    """Serialise every operation with a clean power-off's flush, which runs in another thread."""
    for name in (
        "getattr",
        "chmod",
        "chown",
        "utimens",
        "readdir",
        "mkdir",
        "rmdir",
        "mknod",
        "symlink",
        "link",
        "unlink",
        "rename",
        "open",
        "create",
        "read",
        "write",
        "truncate",
        "release",
    ):
        func = getattr(cls, name)

        setattr(cls, name, _with_lock(func))


_locked(CacheFS)
