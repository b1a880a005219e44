"""Leak probe of the power-loss layer: FUSE daemons still alive for targets under the state directory.

The layer's mounts live only in target namespaces (they vanish with them; ``harness.leaks`` checks host
mounts), so what can be left is a daemon whose target is gone, or a host-visible gg-powerloss mount.
"""

from __future__ import annotations

from pathlib import Path

from harness.powerloss.layer import DAEMON_MODULE


def find_leaks(base: Path) -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if DAEMON_MODULE in cmd and str(base) in cmd:
            out.append(f"power-loss daemon pid {proc.name}: {cmd[:160]}")
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    out += [f"power-loss mount {m}" for m in mounts if m.startswith("gg-powerloss ")]
    return out
