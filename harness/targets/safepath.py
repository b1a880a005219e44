"""Resolve a path inside a foreign root without ever leaving it.

A target's root is reached from the host through ``/proc/<pid>/root``; absolute symlinks inside it
(``/var/run -> /run``) must resolve against that root, not the host's, or a file copy could write on
the host. This does what openat2(RESOLVE_IN_ROOT) does, one component at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_LINKS = 40


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """Host path of ``path`` as seen inside ``root`` (which must be an absolute directory)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if (parts or follow_last) and candidate.is_symlink():
            links += 1
            if links > MAX_LINKS:
                raise OSError(f"too many symbolic links resolving {path!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)
