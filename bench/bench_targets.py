"""Benchmark: time to first command per profile, on a cold and on a warm root-file-system cache.

Cold = the root file system is built from scratch with mmdebstrap into an empty cache directory (downloads
included); warm = the cached tree is reused and only the target (disk image, namespace, mounts) is created.
The peer measured in the same run is the native chroot (native-x86_64): ratios say how much emulation costs.

    python bench/bench_targets.py            # warm only (seconds)
    python bench/bench_targets.py --cold     # cold too (minutes: builds four root file systems)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from harness.profiles import find_profile
from harness.rootfs import RootfsSpec, ensure_rootfs
from harness.targets.qemu_user import QemuUserTarget

PROFILES = ["native-x86_64", "qemu-armv6l", "qemu-armv7l", "qemu-aarch64"]


def first_command(name: str) -> tuple[float, float]:
    """Seconds from nothing to the first `uname -m` answer, and to the first `python3 -c pass`."""
    start = time.monotonic()
    t = QemuUserTarget(find_profile(name))
    try:
        t.power_on()
        t.run(["uname", "-m"], check=True)
        first = time.monotonic() - start
        s2 = time.monotonic()
        t.run(["python3", "-c", "pass"], check=True)
        return first, time.monotonic() - s2
    finally:
        t.close()


RSS_PROBE = (
    "import re; s = open('/proc/self/status').read(); print(re.search(r'VmRSS:\\s+(\\d+)', s).group(1))"
)


def python_rss_kb(name: str) -> int:
    """Resident memory of an idle python3 on the target, as the host (and the memory cgroup) counts it.

    Under qemu-user /proc/self/status describes the emulator process, so this includes QEMU's own memory
    (translation cache, its heap) on top of the guest's: the difference to native is what emulation costs
    against a board's memory limit.
    """
    t = QemuUserTarget(find_profile(name))
    try:
        t.power_on()
        return int(t.run(["python3", "-c", RSS_PROBE], check=True).stdout)
    finally:
        t.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--cold", action="store_true", help="also measure a cold cache (rebuilds root file systems)"
    )
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    warm: dict[str, tuple[float, float]] = {}
    for name in PROFILES:
        ensure_rootfs(RootfsSpec.from_userland(find_profile(name).userland))  # type: ignore[arg-type]
        runs = [first_command(name) for _ in range(args.repeat)]
        warm[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    base = warm["native-x86_64"]
    print(f"{'profile':16} {'warm first cmd s':>17} {'x native':>9} {'python3 start s':>16} {'x native':>9}")
    for name, (first, py) in warm.items():
        print(f"{name:16} {first:17.3f} {first / base[0]:9.1f} {py:16.3f} {py / base[1]:9.1f}")
    print(f"\n{'profile':16} {'python3 RSS MB':>15} {'emulator overhead MB':>21}")
    native_rss = python_rss_kb("native-x86_64")
    for name in PROFILES:
        rss = python_rss_kb(name)
        print(f"{name:16} {rss / 1024:15.1f} {(rss - native_rss) / 1024:21.1f}")
    if args.cold:
        with tempfile.TemporaryDirectory(dir="/var/tmp") as cache:
            os.environ["HARNESS_CACHE_DIR"] = cache
            print(f"\n{'profile':16} {'cold first cmd s':>17} {'x native':>9}")
            cold: dict[str, float] = {}
            for name in PROFILES:
                start = time.monotonic()
                first_command(name)
                cold[name] = time.monotonic() - start
                print(f"{name:16} {cold[name]:17.1f} {cold[name] / cold['native-x86_64']:9.1f}", flush=True)


if __name__ == "__main__":
    from harness.errors import interrupt_on_sigterm

    interrupt_on_sigterm()
    main()
