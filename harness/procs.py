"""Host processes by pid and command line: what leak probes and reapers of every subsystem ask of /proc.

One place so each subsystem's probe (targets, VMs, power-loss daemons, container engines) reads /proc the
same way and treats a process that vanished mid-scan or belongs to another user the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def processes(match: Callable[[str], bool]) -> list[tuple[int, str]]:
    """Live processes (other than this one) whose space-joined command line satisfies ``match``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd and match(cmd):
            out.append((int(proc.name), cmd))
    return out
