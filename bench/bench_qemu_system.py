"""Benchmark: what a whole emulated board costs next to the qemu-user target of the same architecture.

For each qemu-system profile: seconds from power on to the first `uname -m` answer (boot), the accelerator
QEMU used, the guest's MemTotal against the profile's RAM, QEMU's resident memory on the host, and the same
first-command time of the qemu-user peer of that architecture measured in the same run; the ratio says how
much a real kernel boot costs over a chroot. Also the golden-image build (mkfs.ext4 -d) when not cached.

    python bench/bench_qemu_system.py                       # all shipped qemu-system profiles
    python bench/bench_qemu_system.py --profile qemu-system-x86_64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.profiles import find_profile
from harness.targets.qemu_system import QemuSystemTarget
from harness.targets.qemu_user import QemuUserTarget

PEERS = {
    "qemu-system-x86_64": "native-x86_64",
    "qemu-system-aarch64": "qemu-aarch64",
    "qemu-system-armv7l": "qemu-armv7l",
    "qemu-system-armv6l": "qemu-armv6l",
}


def qemu_rss_kb(target: QemuSystemTarget) -> int:
    assert target._qemu is not None
    for line in Path(f"/proc/{target._qemu.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def vm_figures(name: str) -> dict[str, object]:
    profile = find_profile(name)
    t = QemuSystemTarget(profile)
    try:
        s = time.monotonic()
        image = t.image
        image_s = time.monotonic() - s
        s = time.monotonic()
        t.power_on()
        t.run(["uname", "-m"], check=True)
        boot_s = time.monotonic() - s
        facts = t.facts()
        rss = qemu_rss_kb(t)
        s = time.monotonic()
        t.power_off()
        off_s = time.monotonic() - s
        return {"image_s": image_s, "boot_s": boot_s, "off_s": off_s, "accel": t.accel_used,
                "mem_total_mb": facts.mem_total_kb // 1024, "ram_mb": profile.resources.memory_mb,
                "qemu_rss_mb": rss // 1024, "disk_mb": image.disk_mb}
    finally:
        t.close()


def peer_first_command(name: str) -> float:
    s = time.monotonic()
    t = QemuUserTarget(find_profile(name))
    try:
        t.power_on()
        t.run(["uname", "-m"], check=True)
        return time.monotonic() - s
    finally:
        t.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", action="append", help="qemu-system profile(s) (default: all shipped)")
    args = ap.parse_args()
    names = args.profile or list(PEERS)
    print(f"{'profile':22} {'accel':5} {'image s':>8} {'boot s':>7} {'off s':>6} {'peer s':>7} {'ratio':>6} "
          f"{'RAM MB':>7} {'MemTotal':>8} {'QEMU RSS MB':>11}")
    for name in names:
        vm = vm_figures(name)
        peer = peer_first_command(PEERS[name])
        boot = float(vm["boot_s"])  # type: ignore[arg-type]
        print(f"{name:22} {vm['accel']!s:5} {vm['image_s']:8.1f} {boot:7.1f} {vm['off_s']:6.1f} "
              f"{peer:7.1f} {boot / peer:6.1f} {vm['ram_mb']!s:>7} {vm['mem_total_mb']!s:>8} "
              f"{vm['qemu_rss_mb']!s:>11}", flush=True)


if __name__ == "__main__":
    from harness.errors import interrupt_on_sigterm

    interrupt_on_sigterm()
    main()
