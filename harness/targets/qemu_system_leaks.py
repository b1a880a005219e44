"""Leak probe for qemu-system targets: QEMU processes and VM directories left under the state directory.

``harness.leaks.find_leaks`` calls this after every test session. The transport uses QEMU user-mode
networking, so it creates no tap device and no network namespace; a tap named ``ggvm*`` (the prefix reserved
for VM taps) would still be reported here, so a future tap-based variant cannot leak silently.
"""

from __future__ import annotations

from pathlib import Path

from harness.targets.qemu_system import qemu_processes

TAP_PREFIX = "ggvm"


def _taps() -> list[str]:
    net = Path("/sys/class/net")
    if not net.is_dir():
        return []
    return [d.name for d in net.iterdir() if d.name.startswith(TAP_PREFIX) and (d / "tun_flags").exists()]


def find_leaks(base: Path) -> list[str]:
    """Readable lines for every QEMU process, VM directory and harness tap device still there."""
    leaks = [f"qemu-system process {pid}: {cmd[:160]}" for pid, cmd in qemu_processes(base)]
    vms = base / "qemu-system"
    if vms.is_dir():
        leaks += [f"qemu-system VM directory {p}" for p in sorted(vms.iterdir())]
    leaks += [f"tap device {name}" for name in _taps()]
    return leaks
