"""``harness setup``: the system packages and kernel switches targets need, installed idempotently.

A fresh Debian 12 machine needs nothing else. As non-root the step only prints the exact commands that
would fix what is missing, and fails, so nobody is surprised by sudo.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Debian packages, each with why the harness needs it.
APT_PACKAGES: dict[str, str] = {
    "qemu-user-static": "runs armel/armhf/arm64 userlands (qemu-user, static, for chroots)",
    "binfmt-support": "registers qemu-user with binfmt_misc",
    "mmdebstrap": "builds Debian root file systems for targets",
    "debian-archive-keyring": "verifies Debian packages for the root file systems",
    "e2fsprogs": "mkfs.ext4 for the targets' size-limited disks",
    "util-linux": "unshare, nsenter, losetup, mount for the targets' namespaces",
    "openssh-client": "the SSH transport for real boards",
    "openssh-server": "a loopback sshd that tests the SSH transport",
    "mosquitto-clients": "mosquitto_pub/sub, real MQTT clients used against cores",
    "mosquitto": "the cloud-side MQTT endpoint of the core's cloud link (network suite)",
    "chromium": "headless rendering check of the HTML report",
    "procps": "ps/pkill used in leak checks",
    "gcc": "builds the reference core's broker plugin for x86_64",
    "gcc-arm-linux-gnueabi": "cross-builds the broker plugin for armel (armv6l)",
    "gcc-arm-linux-gnueabihf": "cross-builds the broker plugin for armhf (armv7l)",
    "gcc-aarch64-linux-gnu": "cross-builds the broker plugin for arm64 (aarch64)",
    "mosquitto-dev": "mosquitto's plugin headers for the broker plugin",
    "libmosquitto-dev": "mosquitto.h for the broker plugin",
    "iproute2": "ip netns, veth and tc netem for network impairment between fleet and core",
    "nftables": "hard partitions (drop rules) inside the harness's network namespaces",
    "fuse3": "the power-loss layer: a FUSE file system that drops unflushed writes on a cut",
    "libfuse3-3": "libfuse3.so for the power-loss layer (mfusepy binds it with ctypes)",
    "qemu-system-arm": "full-system emulated ARM boards (virt, raspi0)",
    "qemu-system-x86": "full-system x86_64 boards (KVM when /dev/kvm exists)",
    "qemu-utils": "qemu-img for the full-system boards' disk images",
    "podman": "the Docker connector's engine (private store and network namespace per session)",
    "runc": "podman's OCI runtime (crun fails on hybrid cgroups)",
    "docker-compose": "the compose tool the Docker connector runs (seed 003), against podman's Docker API",
    "docker-registry": "a local registry inside the engine's network namespace (DockerPullBeforeUp, DK6)",
    "podman-compose": "compared with docker-compose by python -m harness.docker.bench_compose (optional)",
}
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_HANDLERS = ("qemu-arm", "qemu-aarch64")


@dataclass
class Step:
    what: str
    argv: list[str]


def missing_packages(packages: list[str] | None = None) -> list[str]:
    out = []
    for pkg in packages or list(APT_PACKAGES):
        res = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, timeout=30, check=False
        )
        if "install ok installed" not in res.stdout:
            out.append(pkg)
    return out


def binfmt_steps() -> list[Step]:
    steps: list[Step] = []
    if not (BINFMT_DIR / "status").exists():
        steps.append(
            Step("mount binfmt_misc", ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)])
        )
    for handler in BINFMT_HANDLERS:
        entry = BINFMT_DIR / handler
        enabled = entry.exists() and entry.read_text().startswith("enabled")
        if not enabled:
            steps.append(
                Step(f"enable the {handler} binfmt handler", ["update-binfmts", "--enable", handler])
            )
    return steps


def plan() -> list[Step]:
    """Every step still needed on this machine, in order."""
    steps: list[Step] = []
    missing = missing_packages()
    if missing:
        steps.append(Step("refresh the package lists", ["apt-get", "update"]))
        steps.append(
            Step(
                "install " + ", ".join(missing),
                ["apt-get", "install", "-y", "--no-install-recommends", *missing],
            )
        )
        # binfmt state is only knowable once binfmt-support and qemu are installed
        steps.append(Step("enable binfmt handlers for qemu-user", ["harness", "setup"]))
        return steps
    return binfmt_steps()


def problems() -> list[str]:
    """What still prevents targets from running, in words (empty when ready)."""
    out = [f"package {p} is not installed ({APT_PACKAGES[p]})" for p in missing_packages()]
    if not out:
        out += [s.what + " (not done)" for s in binfmt_steps()]
    if not Path("/sys/fs/cgroup/memory").exists() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        out.append("no memory cgroup controller under /sys/fs/cgroup (memory limits cannot be enforced)")
    if not Path("/dev/loop-control").exists():
        out.append("no /dev/loop-control (size-limited target disks need loop devices)")
    return out


def run_setup(echo: Callable[[str], None] = print, dry_run: bool = False) -> int:
    """Carry out the plan; return a process exit status."""
    steps = plan()
    if not steps:
        echo("setup: everything targets need is installed and enabled")
        return 0
    if os.geteuid() != 0 or dry_run:
        echo("setup: run these commands as root (or run `harness setup` as root):")
        for s in steps:
            if s.argv[:2] == ["harness", "setup"]:
                continue
            echo("  " + " ".join(s.argv) + f"    # {s.what}")
        if binfmt_steps() and missing_packages():
            echo("  harness setup    # then enable the binfmt handlers")
        return 2 if not dry_run else 0
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for _round in range(3):  # packages first, then the binfmt switches they make possible
        steps = [s for s in plan() if s.argv[:2] != ["harness", "setup"]]
        if not steps:
            break
        for s in steps:
            echo(f"setup: {s.what}: {' '.join(s.argv)}")
            res = subprocess.run(s.argv, env=env, timeout=1800, check=False)
            if res.returncode != 0:
                echo(f"setup: failed ({s.what}), exit {res.returncode}")
                return 3
    left = problems()
    for p in left:
        echo(f"setup: still missing: {p}")
    if not left:
        echo("setup: done")
    return 3 if left else 0


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None
