"""Leak probe of the power-loss layer: FUSE daemons still alive for targets under the state directory.

The layer's mounts live only in target namespaces (they vanish with them; ``harness.leaks`` checks host
mounts), so what can be left is a daemon whose target is gone, or a host-visible gg-powerloss mount.
"""

from __future__ import annotations

from pathlib import Path

from harness.powerloss.layer import DAEMON_MODULE
from harness.procs import processes


def find_leaks(base: Path) -> list[str]:
    found = processes(lambda cmd: DAEMON_MODULE in cmd and str(base) in cmd)
    out = [f"power-loss daemon pid {pid}: {cmd[:160]}" for pid, cmd in found]
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    out += [f"power-loss mount {m}" for m in mounts if m.startswith("gg-powerloss ")]
    return out
