"""Checks of paths the core relies on: /var/run, the standard stream devices, an executable /tmp."""

from __future__ import annotations

from harness.checks.common import CMD_TIMEOUT, sh, verdict
from harness.checks.registry import board_check
from harness.checks.result import CheckResult
from harness.profiles import DeviceProfile
from harness.targets.base import Target

STREAMS = ("/dev/stdin", "/dev/stdout", "/dev/stderr")
_EXISTS = 'for p in "$@"; do if [ -e "$p" ]; then echo "$p present"; else echo "$p MISSING"; fi; done'
EXEC_MARK = "gg-harness-tmp-exec-ok"
#: Write a script to /tmp, make it executable and run it: the only test that also catches noexec set by
#: means other than the mount table (an LSM policy, a read-only /tmp).
TMP_EXEC = (
    'f=/tmp/gg-harness-exec-check.$$; '
    f"printf '#!/bin/sh\\necho {EXEC_MARK}\\n' > \"$f\" && chmod +x \"$f\" && \"$f\"; "
    'rc=$?; rm -f "$f"; exit $rc'
)


@board_check("var_run")
def var_run(target: Target, profile: DeviceProfile) -> CheckResult:
    """/var/run must be a directory (following the /var/run -> /run symlink)."""
    target.run(["ls", "-ld", "/var/run"], timeout=CMD_TIMEOUT)
    res = target.run(["test", "-d", "/var/run"], timeout=CMD_TIMEOUT)
    if res.ok:
        return verdict(True, "/var/run exists and is a directory.")
    return verdict(False, "/var/run is missing or not a directory "
                   f"(`test -d /var/run` exit {res.exit_status}).")


@board_check("std_streams")
def std_streams(target: Target, profile: DeviceProfile) -> CheckResult:
    """The core's child processes use /dev/stdin, /dev/stdout and /dev/stderr by name."""
    target.run(["ls", "-l", *STREAMS], timeout=CMD_TIMEOUT)
    res = target.run(sh(_EXISTS, *STREAMS), timeout=CMD_TIMEOUT)
    present = {line.split()[0] for line in res.stdout.splitlines() if line.endswith(" present")}
    missing = [p for p in STREAMS if p not in present]
    if missing:
        return verdict(False, f"{len(missing)} of {len(STREAMS)} standard stream devices are missing: "
                       f"{', '.join(missing)}.")
    return verdict(True, f"All {len(STREAMS)} standard stream devices exist ({', '.join(STREAMS)}).")


def mount_of(path: str, mounts: str) -> tuple[str, str, str] | None:
    """(mount point, fs type, options) of the mount holding ``path``, from /proc/mounts text.

    The last entry for the longest matching mount point wins, as the kernel stacks later mounts on top.
    """
    best: tuple[str, str, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mnt = fields[1].replace("\\040", " ")
        inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
        if inside and (best is None or len(mnt) >= len(best[0])):
            best = (mnt, fields[2], fields[3])
    return best


@board_check("tmp_exec")
def tmp_exec(target: Target, profile: DeviceProfile) -> CheckResult:
    """Run a script from /tmp for real, and report /tmp's mount options alongside."""
    res = target.run(sh(TMP_EXEC), timeout=CMD_TIMEOUT)
    mounts = target.run(["cat", "/proc/mounts"], timeout=CMD_TIMEOUT)
    mount = mount_of("/tmp", mounts.stdout) if mounts.ok else None
    if mount is None:
        where = "mount options of /tmp unknown"
    else:
        # Flags only (rw, noexec, nosuid, ...): an overlay's lowerdir=... paths say nothing about exec.
        flags = ",".join(o for o in mount[2].split(",") if "=" not in o)
        if mount[0] == "/tmp":
            where = f"/tmp is a {mount[1]} mounted {flags}"
        else:
            where = f"/tmp lives on the {mount[1]} mounted at {mount[0]}, {flags}"
    noexec = mount is not None and "noexec" in mount[2].split(",")
    if res.ok and EXEC_MARK in res.stdout:
        return verdict(True, f"A script in /tmp ran ({where}).")
    why = "noexec" if noexec else f"exit status {res.exit_status}"
    return verdict(False, f"A script in /tmp could not be executed ({why}; {where}).")
