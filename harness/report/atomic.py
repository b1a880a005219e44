"""Atomic file replacement, so a report file is always either the old complete one or the new complete one.

A run can be killed at any moment (a power cut test, Ctrl-C, a CI timeout); readers such as a CI job that
publishes the report dir must never see a half-written file. Write to a temp file in the same directory, then
``os.replace`` it over the target (atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: Path, text: str, *, durable: bool = False) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically.

    ``durable`` also fsyncs the file and its directory, which survives a host power cut but costs a disk
    flush; intermediate reports skip it (a crash of the process alone never loses a renamed file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as tmp:
            tmp.write(text)
            tmp.flush()
            if durable:
                os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; reports are meant to be read by CI and people
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
