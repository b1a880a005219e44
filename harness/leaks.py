"""Find what the harness left behind: processes, mounts, cgroups, loop devices, target directories.

Tests assert this is empty after a session; ``gc_stale_targets`` clears what a killed harness could not.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.paths import state_dir
from harness.procs import pid_alive, processes
from harness.targets.cgroup import MemoryCgroup, leftover_groups

OWNER_FILE = "owner.pid"



def harness_processes(base: Path | None = None) -> list[str]:
    """Live target init processes (and their unshare parents) belonging to ``base`` (the state dir)."""
    base = base or state_dir()
    found = processes(lambda cmd: "nsinit.py" in cmd and str(base) in cmd)
    return [f"pid {pid}: {cmd[:160]}" for pid, cmd in found]


def loop_devices(base: Path | None = None) -> list[str]:
    base = base or state_dir()
    res = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=30, check=False)
    return [line for line in res.stdout.splitlines() if str(base) in line]


def host_mounts(base: Path | None = None) -> list[str]:
    """Mounts under the state directory visible on the host (targets mount only in their own namespaces)."""
    base = base or state_dir()
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    return [line for line in lines if f" {base}" in line]


def target_dirs(base: Path | None = None) -> list[str]:
    d = (base or state_dir()) / "targets"
    return [str(p) for p in d.iterdir()] if d.exists() else []


#: Leak probes of other subsystems ("module:function", each ``(base: Path) -> list[str]``); a module
#: that is not there (yet) is skipped, anything else it raises is a leak-check failure.
EXTRA_PROBES = (
    "harness.targets.qemu_system_leaks:find_leaks",
    "harness.net.leaks:find_leaks",
    "harness.docker.leaks:find_leaks",
    "harness.powerloss.leaks:find_leaks",
)


def _extra_leaks(base: Path) -> list[str]:
    import importlib

    out: list[str] = []
    for spec in EXTRA_PROBES:
        module, _, func = spec.partition(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        out += getattr(mod, func)(base)
    return out


def find_leaks(base: Path | None = None) -> list[str]:
    """Everything a finished harness should not have left, as readable lines."""
    base = base or state_dir()
    leaks = [f"process {p}" for p in harness_processes(base)]
    leaks += [f"loop device {line}" for line in loop_devices(base)]
    leaks += [f"mount {line}" for line in host_mounts(base)]
    leaks += [f"target directory {p}" for p in target_dirs(base)]
    leaks += [f"cgroup {g}" for g in leftover_groups()]
    leaks += _extra_leaks(base)
    return leaks


def gc_stale_targets() -> list[str]:
    """Remove target directories and cgroups whose owning harness process is dead (it was SIGKILLed)."""
    removed: list[str] = []
    d = state_dir() / "targets"
    if not d.exists():
        return removed
    groups = {g.name: g for g in leftover_groups()}
    for wd in d.iterdir():
        try:
            owner = int((wd / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        if wd.name in groups:
            MemoryCgroup.attach(groups[wd.name]).remove()
        shutil.rmtree(wd, ignore_errors=True)
        removed.append(str(wd))
    return removed
