"""Checks of kernel facts: link protection, kernel options and cgroups for containerized Lambdas.

On a qemu-user target these facts are the host's, so results are informative there; a kernel config file
named by the profile describes the device's own kernel and makes the kernel_config row authoritative again.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from harness.checks.catalog import KERNEL_OPTIONS
from harness.checks.common import CMD_TIMEOUT, error, verdict
from harness.checks.registry import board_check
from harness.checks.result import CheckResult
from harness.profiles import DeviceProfile
from harness.targets.base import Target

SYSCTLS = ("fs.protected_hardlinks", "fs.protected_symlinks")
_OPTION = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_NOT_SET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set")


@board_check("link_protection")
def link_protection(target: Target, profile: DeviceProfile) -> CheckResult:
    """Without hardlink and symlink protection the V1 core runs only in its insecure mode (-i)."""
    informative = target.kernel_is_host
    values: dict[str, str] = {}
    for name in SYSCTLS:
        res = target.run(["cat", "/proc/sys/" + name.replace(".", "/")], timeout=CMD_TIMEOUT)
        values[name] = res.stdout.strip() if res.ok else "unreadable"
    off = [f"{n} is {v}" for n, v in values.items() if v != "1"]
    if off:
        return verdict(False, f"Link protection is off: {'; '.join(off)} (needs 1).", informative=informative)
    return verdict(True, f"Link protection is on: {', '.join(f'{n} = 1' for n in values)}.",
                   informative=informative)


def parse_kernel_config(text: str) -> dict[str, str]:
    """CONFIG_* name -> value ('y', 'm', ...; 'n' for '# ... is not set')."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = _OPTION.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
            continue
        m = _NOT_SET.match(line)
        if m:
            out[m.group(1)] = "n"
    return out


def profile_kernel_config(profile: DeviceProfile) -> Path | None:
    """The host file the profile's ``kernel_config`` names (relative to the profile's directory)."""
    if not profile.kernel_config:
        return None
    path = Path(profile.kernel_config).expanduser()
    if not path.is_absolute():
        src = Path(profile.source)
        base = src.parent if src.suffix in (".yaml", ".yml") else Path.cwd()
        path = base / path
    return path


def _read_host_config(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode(errors="replace")


@board_check("kernel_config")
def kernel_config(target: Target, profile: DeviceProfile) -> CheckResult:
    """Every kernel option containerized Lambdas need is built in (=y) or a module (=m).

    Read from the file the profile names (authoritative: it is the device's kernel), else from the device's
    /proc/config.gz or /boot/config-$(uname -r) (informative under qemu-user: the host's kernel).
    """
    notes: list[str] = []
    host_file = profile_kernel_config(profile)
    if host_file is not None:
        informative = False
        if not host_file.is_file():
            return error(f"Error: the profile's kernel_config {profile.kernel_config!r} names {host_file}, "
                         "which does not exist.")
        text = _read_host_config(host_file)
        origin = str(host_file)
        notes.append(f"read host file {origin} (the profile's kernel_config, the device's own kernel): "
                     f"{len(text)} bytes")
    else:
        informative = target.kernel_is_host
        res = target.run(["zcat", "/proc/config.gz"], timeout=CMD_TIMEOUT)
        text, origin = (res.stdout, "/proc/config.gz") if res.ok and "CONFIG_" in res.stdout else ("", "")
        if not text:
            release = target.run(["uname", "-r"], timeout=CMD_TIMEOUT).stdout.strip()
            boot = f"/boot/config-{release}"
            text, origin = (target.read_text(boot) or ""), boot
        if "CONFIG_" not in text:
            return error("Error: no kernel config found (no /proc/config.gz, no /boot/config-$(uname -r)); "
                         "name the device's kernel config file in the profile's kernel_config.",
                         informative=informative)
    options = parse_kernel_config(text)
    wanted = [f"CONFIG_{o}" for o in KERNEL_OPTIONS]
    missing = [o for o in wanted if options.get(o, "n") not in ("y", "m")]
    notes.append("required options as found in " + origin + ":\n" + "\n".join(
        f"{o}={options[o]}" if o in options else f"{o} (absent)" for o in wanted))
    evidence = "\n\n".join(notes)
    if missing:
        return verdict(False, f"{len(missing)} of {len(wanted)} required kernel options are not enabled in "
                       f"{origin}: {', '.join(missing)}.", informative=informative, notes=evidence)
    return verdict(True, f"All {len(wanted)} required kernel options are enabled in {origin}.",
                   informative=informative, notes=evidence)


def _cgroup_table(text: str) -> dict[str, bool]:
    """Controller -> enabled, from /proc/cgroups."""
    out: dict[str, bool] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not line.startswith("#"):
            out[fields[0]] = fields[3] == "1"
    return out


@board_check("cgroups")
def cgroups(target: Target, profile: DeviceProfile) -> CheckResult:
    """The memory and devices controllers must be enabled and mounted as cgroup v1 hierarchies.

    The V1 core sets Lambda memory limits and device access through the v1 hierarchies; on a cgroup v2-only
    system it cannot, which is why its setup guides ask for systemd.unified_cgroup_hierarchy=0.
    """
    informative = target.kernel_is_host
    table_res = target.run(["cat", "/proc/cgroups"], timeout=CMD_TIMEOUT)
    mounts_res = target.run(["cat", "/proc/mounts"], timeout=CMD_TIMEOUT)
    if not mounts_res.ok:
        return error("Error: cannot read /proc/mounts.", informative=informative)
    enabled = _cgroup_table(table_res.stdout) if table_res.ok else {}
    v1: dict[str, str] = {}
    v2_mounts: list[str] = []
    for line in mounts_res.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup":
            for opt in fields[3].split(","):
                v1.setdefault(opt, fields[1])
        elif fields[2] == "cgroup2":
            v2_mounts.append(fields[1])
    problems, good = [], []
    for ctl in ("memory", "devices"):
        if table_res.ok and not enabled.get(ctl, False):
            problems.append(f"{ctl} is not enabled in /proc/cgroups")
        elif ctl not in v1:
            extra = f" (only cgroup v2 is mounted, at {', '.join(v2_mounts)})" if v2_mounts else ""
            problems.append(f"no cgroup v1 hierarchy with {ctl} is mounted{extra}")
        else:
            good.append(f"{ctl} at {v1[ctl]}")
    if problems:
        return verdict(False, f"cgroups not ready: {'; '.join(problems)}.", informative=informative)
    return verdict(True, f"The memory and devices cgroups are enabled and mounted ({', '.join(good)}).",
                   informative=informative)
