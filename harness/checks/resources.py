"""Checks of the room the core gets: free disk on the install root and memory."""

from __future__ import annotations

import posixpath

from harness.checks.catalog import (
    SEED_OTA,
    SEED_V1,
    V1_DISK_MB,
    V1_DISK_OTA_MB,
    V1_RAM_MB,
    V1_RAM_STREAM_MANAGER_MB,
    V2_DISK_MB,
    V2_RAM_MB,
)
from harness.checks.common import CMD_TIMEOUT, error, verdict
from harness.checks.registry import board_check
from harness.checks.result import CheckResult
from harness.profiles import DeviceProfile
from harness.targets.base import Target


def disk_requirement(profile: DeviceProfile) -> tuple[int, str, str]:
    """(MiB needed, requirement text, source) for ``profile``."""
    if profile.greengrass == "v2":
        return V2_DISK_MB, f"Greengrass V2: >= {V2_DISK_MB} MB free on the install root", ""
    if "ota" in profile.features:
        return (V1_DISK_OTA_MB, f"Greengrass V1 with OTA: >= {V1_DISK_OTA_MB} MB free on the install root "
                f"(about 3x the core; {V1_DISK_MB} MB without OTA)", f"{SEED_V1}; {SEED_OTA}")
    return V1_DISK_MB, f"Greengrass V1 without OTA: >= {V1_DISK_MB} MB free on the install root", ""


def _candidates(path: str) -> list[str]:
    """``path`` and its parents, nearest first (the install root usually does not exist before install)."""
    path = posixpath.normpath("/" + path.lstrip("/"))
    out = [path]
    while path != "/":
        path = posixpath.dirname(path)
        out.append(path)
    return out


def parse_df(output: str) -> tuple[int, str] | None:
    """(available kB, mount point) from `df -Pk` output; None if it cannot be read."""
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    # POSIX format: filesystem, size, used, available, capacity%, mount point (which may contain spaces).
    cap = next((i for i, f in enumerate(fields) if f.endswith("%") and f[:-1].isdigit()), None)
    if cap is None or cap < 3 or not fields[cap - 1].isdigit():
        return None
    return int(fields[cap - 1]), " ".join(fields[cap + 1 :])


@board_check("disk")
def disk(target: Target, profile: DeviceProfile) -> CheckResult:
    """Free space on the file system that will hold the install root (`df -Pk` on it or a parent)."""
    need_mb, requirement, source = disk_requirement(profile)
    for path in _candidates(profile.install_root):
        res = target.run(["df", "-Pk", path], timeout=CMD_TIMEOUT)
        if res.ok:
            break
    else:
        return error(f"Error: `df -Pk` failed on {profile.install_root} and every parent, so free space is "
                     "unknown.", requirement)
    parsed = parse_df(res.stdout)
    if parsed is None:
        return error(f"Error: cannot read the output of `df -Pk {path}`.", requirement)
    avail_kb, mount = parsed
    where = path if path == profile.install_root else f"{path} (nearest parent of {profile.install_root})"
    # A qemu-user target without its own disk image writes to the host's file system: that free space says
    # nothing about the board, so the row is informative there (as ram is without a memory limit).
    informative = target.kernel_is_host and profile.resources.disk_mb is None
    notes = ("note: the target has no disk image of its own (resources.disk_mb unset), so this is the host's "
             "free space and the row is informative") if informative else ""
    ok = avail_kb >= need_mb * 1024
    return verdict(ok, f"{avail_kb // 1024} MB free on {where}, mounted at {mount or '?'}; "
                   f"{'at least' if ok else 'less than'} the {need_mb} MB required.", requirement,
                   source=source, informative=informative, notes=notes)


@board_check("ram")
def ram(target: Target, profile: DeviceProfile) -> CheckResult:
    """Memory the core can use: MemTotal, capped by the limit the target enforces on everything it runs.

    Under qemu-user /proc/meminfo is the host's, so the enforced limit (the target's memory cgroup) is the
    board's RAM; without a limit the number describes the host and the row is only informative.
    """
    if profile.greengrass == "v2":
        need_mb, requirement = V2_RAM_MB, f"Greengrass V2: >= {V2_RAM_MB} MB RAM for the core"
    elif "stream_manager" in profile.features:
        need_mb = V1_RAM_STREAM_MANAGER_MB
        requirement = f"Greengrass V1 with stream manager: >= {need_mb} MB RAM for the core"
    else:
        need_mb, requirement = V1_RAM_MB, f"Greengrass V1: >= {V1_RAM_MB} MB RAM for the core"
    facts = target.facts()
    limited = facts.memory_limit_kb is not None
    informative = target.kernel_is_host and not limited
    if target.kernel_is_host:
        notes = ("note: /proc/meminfo seen through qemu-user is the host's; "
                 + ("the memory limit the target enforces (its memory cgroup) is what counts"
                    if limited else "the target enforces no memory limit, so this row is informative"))
    else:
        notes = "the effective memory is MemTotal, or the enforced memory limit when it is lower"
    if facts.effective_memory_kb <= 0:
        return error("Error: the device reported no memory size (MemTotal missing in /proc/meminfo).",
                     requirement, informative=informative, notes=notes)
    have_mb = facts.effective_memory_kb // 1024
    by_limit = limited and facts.effective_memory_kb == facts.memory_limit_kb
    what = "the enforced memory limit" if by_limit else "MemTotal"
    ok = facts.effective_memory_kb >= need_mb * 1024
    return verdict(ok, f"{have_mb} MB available to the core ({what}); "
                   f"{'at least' if ok else 'less than'} the {need_mb} MB required.", requirement,
                   informative=informative, notes=notes)
