"""What survives a power cut: a model of a kernel's page cache between a live tree and a durable tree.

Why: a plain SIGKILL of the target (the "crash" fault model) keeps everything the core wrote, because the
host's page cache survives. Real boards lose what was not flushed. This model keeps two trees:

- ``live``: what processes see (on a tmpfs inside the target, so it vanishes with the target's namespace);
- ``durable``: what stable storage holds (the core's state directory on the target's disk).

Every write goes to ``live`` only. Only what makes data durable on a real kernel copies to ``durable``:

- ``fsync``/``fdatasync`` of a file (or a write on an ``O_SYNC``/``O_DSYNC`` descriptor, which the kernel
  turns into an fsync): the file's content and mode, under every name the file *durably* has;
- ``fsync`` of a directory: its entries (new files, renames, unlinks, new directories) - a file that was
  renamed or created but whose directory was never fsynced keeps its old name or does not exist after a cut;
  a new file whose content was never fsynced is empty (the delayed-allocation "zero-length file");
- a rename across directories is one transaction, as in a journalling file system: syncing either
  directory syncs the entry in the other, so a renamed file or directory is never in neither place.

Files are tracked by their live inode number, so a file keeps its durable data through renames and hard
links. The model is the weakest behaviour POSIX and ext4/xfs allow for these cases, never weaker.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

TMP_PREFIX = ".gg-powerloss-tmp."


def _parent(rel: str) -> str:
    return os.path.dirname(rel)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


@dataclass
class DurabilityModel:
    """The bookkeeping between ``live`` and ``durable`` (both host paths to directory trees)."""

    live: str
    durable: str
    #: live inode -> durable relative paths naming it ("" is the root)
    names: dict[int, set[str]] = field(default_factory=dict)
    #: durable relative path -> live inode it belongs to
    owner: dict[str, int] = field(default_factory=dict)
    #: content fsynced while the file had no durable name (reachable once a directory sync names it)
    nameless: dict[int, bytes] = field(default_factory=dict)
    #: cross-directory renames not yet durable: (old parent, old name, new parent, new name)
    moves: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: journal mode: live directories whose entries changed, files that shrank, since the last commit
    dirty_dirs: set[str] = field(default_factory=set)
    shrunk: dict[int, int] = field(default_factory=dict)
    #: counters for reports
    file_syncs: int = 0
    dir_syncs: int = 0
    commits: int = 0

    # -- paths --------------------------------------------------------------------------------------
    def lpath(self, rel: str) -> str:
        return os.path.join(self.live, rel) if rel else self.live

    def dpath(self, rel: str) -> str:
        return os.path.join(self.durable, rel) if rel else self.durable

    # -- start --------------------------------------------------------------------------------------
    def load(self) -> None:
        """Copy the durable tree into the (empty) live tree and map every inode: the state at power-on.

        A cut may have killed the model half way through an entry update: its temporary entries are not
        part of the durable state (the renames that would have published them never happened).
        """
        for rel in list(self._walk(self.durable)):
            if os.path.basename(rel).startswith(TMP_PREFIX):
                path = self.dpath(rel)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.lexists(path):
                    os.unlink(path)
        shutil.copytree(
            self.durable, self.live, symlinks=True, dirs_exist_ok=True, copy_function=shutil.copy2
        )
        st = os.stat(self.durable)  # the root may be reached through /proc/self/fd/N: follow it
        os.chmod(self.live, stat.S_IMODE(st.st_mode))
        os.chown(self.live, st.st_uid, st.st_gid)
        for rel in self._walk(self.durable):
            if os.path.basename(rel).startswith(TMP_PREFIX):
                continue
            try:
                ino = os.lstat(self.lpath(rel)).st_ino
            except FileNotFoundError:
                continue
            self._name(ino, rel)

    @staticmethod
    def _copy_meta(src: str, dst: str) -> None:
        st = os.lstat(src)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.lchown(dst, st.st_uid, st.st_gid)

    def _walk(self, top: str) -> Iterator[str]:
        yield ""
        for dirpath, dirnames, filenames in os.walk(top):
            rel_dir = os.path.relpath(dirpath, top)
            rel_dir = "" if rel_dir == "." else rel_dir
            for n in dirnames + filenames:
                yield _join(rel_dir, n)

    def _name(self, ino: int, rel: str) -> None:
        self.names.setdefault(ino, set()).add(rel)
        self.owner[rel] = ino

    def _unname(self, rel: str) -> None:
        ino = self.owner.pop(rel, None)
        if ino is not None:
            self.names.get(ino, set()).discard(rel)

    def _unname_tree(self, rel: str) -> None:
        prefix = rel + "/"
        for r in [r for r in self.owner if r == rel or r.startswith(prefix)]:
            self._unname(r)

    def _rekey_tree(self, old: str, new: str) -> None:
        prefix = old + "/"
        for r in [r for r in self.owner if r == old or r.startswith(prefix)]:
            ino = self.owner.pop(r)
            nr = new + r[len(old) :]
            self.names[ino].discard(r)
            self._name(ino, nr)

    # -- what the file system reports ---------------------------------------------------------------
    def note_rename(self, old: str, new: str) -> None:
        """Remember a rename across directories: the two entries become durable together."""
        if _parent(old) != _parent(new):
            self.moves.append((_parent(old), os.path.basename(old), _parent(new), os.path.basename(new)))

    # -- fsync of a file ----------------------------------------------------------------------------
    def sync_file(self, fd: int) -> None:
        """Make the content of the live file open as ``fd`` durable under its durable names."""
        st = os.fstat(fd)
        self.file_syncs += 1
        self.shrunk.pop(st.st_ino, None)
        if not stat.S_ISREG(st.st_mode):
            return
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)  # the descriptor may be write-only
        try:
            data = _read_all(rfd, st.st_size)
        finally:
            os.close(rfd)
        existing = [r for r in self.names.get(st.st_ino, ()) if os.path.lexists(self.dpath(r))]
        if not existing:
            self.nameless[st.st_ino] = data
            return
        dst = self.dpath(existing[0])  # the durable names are hard links of one durable inode
        out = os.open(dst, os.O_RDWR)
        try:
            _write_changes(out, data)
            os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.fchown(out, st.st_uid, st.st_gid)
        finally:
            os.close(out)

    # -- fsync of a directory -----------------------------------------------------------------------
    def sync_dir(self, rel: str) -> None:
        """Make the entries of live directory ``rel`` durable (creating its durable parents if needed)."""
        self.dir_syncs += 1
        drel = self._ensure_dir(rel)
        if drel is None:
            return
        live_names = self._entries(self.lpath(rel))
        for name in live_names:
            self._sync_entry(rel, drel, name)
        for name in self._entries(self.dpath(drel)):
            if name not in live_names:
                self._remove_durable(_join(drel, name))
        for move in [m for m in self.moves if rel in (m[0], m[2])]:
            self.moves.remove(move)
            old_parent, old_name, new_parent, new_name = move
            other = (new_parent, new_name) if rel == old_parent else (old_parent, old_name)
            odrel = self._durable_dir(other[0])
            if odrel is None:
                continue
            if os.path.lexists(self.lpath(_join(*other))):
                self._sync_entry(other[0], odrel, other[1])
            elif os.path.lexists(self.dpath(_join(odrel, other[1]))):
                self._remove_durable(_join(odrel, other[1]))

    def _entries(self, path: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(path) if not n.startswith(TMP_PREFIX))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _durable_dir(self, rel: str) -> str | None:
        """The durable path of live directory ``rel``, or None when it has none."""
        try:
            ino = os.lstat(self.lpath(rel)).st_ino
        except FileNotFoundError:
            return None
        for r in self.names.get(ino, ()):
            if os.path.isdir(self.dpath(r)) and not os.path.islink(self.dpath(r)):
                return r
        return None

    def _ensure_dir(self, rel: str) -> str | None:
        """The durable path of live directory ``rel``; a new directory gets its entry in its parent.

        Real kernels (ext4's journal, btrfs's log tree) make a new directory's own entry durable when the
        directory is fsynced, so this is not weaker than them.
        """
        found = self._durable_dir(rel)
        if found is not None or rel == "":
            return found if found is not None else ("" if os.path.isdir(self.durable) else None)
        parent = self._ensure_dir(_parent(rel))
        if parent is None:
            return None
        self._sync_entry(_parent(rel), parent, os.path.basename(rel))
        return self._durable_dir(rel)

    def _remove_durable(self, drel: str) -> None:
        path = self.dpath(drel)
        if os.path.isdir(path) and not os.path.islink(path):
            # one rename takes the whole directory away, as a real unlink does; a cut during the
            # removal of its contents then leaves only a temporary entry that power-on discards
            gone = self.dpath(_join(_parent(drel), TMP_PREFIX + "gone." + os.path.basename(drel)))
            if os.path.lexists(gone):
                shutil.rmtree(gone, ignore_errors=True)
            os.rename(path, gone)
            shutil.rmtree(gone, ignore_errors=True)
            self._unname_tree(drel)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._unname(drel)

    def _sync_entry(self, lparent: str, dparent: str, name: str) -> None:
        """Make durable entry ``dparent/name`` what live entry ``lparent/name`` is."""
        lrel, drel = _join(lparent, name), _join(dparent, name)
        try:
            st = os.lstat(self.lpath(lrel))
        except FileNotFoundError:
            return
        ino = st.st_ino
        if self.owner.get(drel) == ino and os.path.lexists(self.dpath(drel)):
            return
        dst = self.dpath(drel)
        tmp = self.dpath(_join(dparent, TMP_PREFIX + name))
        if os.path.lexists(tmp):
            self._remove_durable(_join(dparent, TMP_PREFIX + name))
        if stat.S_ISDIR(st.st_mode):
            elsewhere = [r for r in self.names.get(ino, ()) if os.path.isdir(self.dpath(r))]
            if os.path.lexists(dst):
                self._remove_durable(drel)
            if elsewhere:  # a renamed directory keeps its durable entries
                os.rename(self.dpath(elsewhere[0]), dst)
                self._rekey_tree(elsewhere[0], drel)
            else:
                os.mkdir(dst)
                self._copy_meta(self.lpath(lrel), dst)
                self._name(ino, drel)
            return
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(self.lpath(lrel)), tmp)
        elif stat.S_ISREG(st.st_mode):
            linked = [r for r in self.names.get(ino, ()) if os.path.isfile(self.dpath(r))]
            if linked:
                os.link(self.dpath(linked[0]), tmp)
            else:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    _write_all(fd, self.nameless.pop(ino, b""))  # never fsynced: an empty file
                finally:
                    os.close(fd)
                self._copy_meta(self.lpath(lrel), tmp)
        else:
            return  # sockets and fifos hold no data
        if os.path.isdir(dst) and not os.path.islink(dst):
            self._remove_durable(drel)
        os.replace(tmp, dst)
        self._unname(drel)
        self._name(ino, drel)

    # -- journal commit (the "ext4" behaviour) -----------------------------------------------------
    def note_entries_changed(self, *rels: str) -> None:
        """A create, unlink, rename... in these live directories (for the next journal commit)."""
        self.dirty_dirs.update(rels)

    def note_shrunk(self, ino: int, size: int) -> None:
        """A truncation to ``size``: the smallest size since the last commit is what the journal keeps."""
        self.shrunk[ino] = min(size, self.shrunk.get(ino, size))

    def commit_metadata(self) -> None:
        """A journal commit of an ordered-mode journalling file system (ext4 ``data=ordered``).

        Every metadata change so far becomes durable, in one go: directory entries (new files, renames,
        unlinks) and truncations. File *data* does not: a file created or rewritten in place and not
        fsynced is empty (or cut short) afterwards - the "zero-length file after a crash" of delayed
        allocation. ext4 commits every ``commit=`` seconds (5 by default) and on every fsync.
        """
        self.commits += 1
        for rel in sorted(self.dirty_dirs, key=lambda r: r.count("/")):
            if os.path.isdir(self.lpath(rel)):
                self.sync_dir(rel)
        self.dirty_dirs.clear()
        for ino, size in self.shrunk.items():
            for r in self.names.get(ino, ()):
                path = self.dpath(r)
                if os.path.isfile(path) and size < os.path.getsize(path):
                    os.truncate(path, size)  # hard links share the inode: once is enough
                    break
        self.shrunk.clear()

    # -- everything (clean shutdown) ----------------------------------------------------------------
    def sync_all(self) -> None:
        """What ``sync`` before a clean power-off does: the durable tree becomes the live tree."""
        for dirpath, dirnames, filenames in os.walk(self.live):
            rel = os.path.relpath(dirpath, self.live)
            rel = "" if rel == "." else rel
            self.sync_dir(rel)
            for n in filenames:
                path = os.path.join(dirpath, n)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                fd = os.open(path, os.O_RDONLY)
                try:
                    self.sync_file(fd)
                finally:
                    os.close(fd)
            dirnames.sort()


def _read_all(fd: int, size_hint: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, max(size_hint - offset, 1 << 16), offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _write_changes(fd: int, data: bytes) -> None:
    """Make durable file ``fd`` hold ``data`` by writing only the bytes that differ, then trimming.

    Why: the cut may kill the daemon in the middle of this very update. An fsync on a real disk never
    touches blocks that did not change, so an append's fsync cut half way keeps everything flushed before
    it. Rewriting the whole file (truncate, then write) would instead leave it empty for a moment, losing
    data the core was told was safe - a loss no real file system has.
    """
    old = _read_all(fd, os.fstat(fd).st_size)
    if old == data:
        return
    same = _common_prefix(old, data)
    view = memoryview(data)[same:]
    offset = same
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
    if len(old) > len(data):
        os.ftruncate(fd, len(data))


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (compared in blocks, then bytes)."""
    limit, block, i = min(len(a), len(b)), 1 << 16, 0
    while i + block <= limit and a[i : i + block] == b[i : i + block]:
        i += block
    while i < limit and a[i] == b[i]:
        i += 1
    return i


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
