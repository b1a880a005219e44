"""Atomic file writes for credentials and artefacts.

A crash (or SIGKILL) in the middle of a write must never leave a torn key or certificate behind: every
file is written under a temporary name and renamed into place, and private keys are created 0600 from the
first byte so they are never readable by others, even briefly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_MODE, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` via a same-directory temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits; set exactly what was asked
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if fsync:
        sync_dir(path.parent)


def write_private(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write a private key (or anything secret): mode 0600 from creation on."""
    write_atomic(path, data, mode=PRIVATE_MODE, fsync=fsync)


def write_bundle(directory: Path, files: dict[str, tuple[bytes, int]], *, fsync: bool = False) -> None:
    """Create ``directory`` holding exactly ``files`` ({name: (data, mode)}), all of them or none.

    The files are written into a temporary sibling directory that is then renamed into place, so a
    reader (or a crash) never sees a directory with a certificate but no key. An existing directory
    (left over from an interrupted run) is replaced.
    """
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{directory.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    os.mkdir(tmp, PRIVATE_DIR_MODE)
    try:
        for name, (data, mode) in files.items():
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            try:
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        if fsync:
            sync_dir(tmp)
        try:
            os.rename(tmp, directory)
        except OSError:  # the target exists (leftover of an interrupted run): replace it
            shutil.rmtree(directory, ignore_errors=True)
            os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if fsync:
        sync_dir(parent)


def sync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with the last component readable only by its owner."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def remove_tree(path: Path) -> None:
    """Remove a directory tree if it exists; missing is fine (deletes are idempotent)."""
    shutil.rmtree(path, ignore_errors=True)
