"""Check that the user and group components run as exist, and (V2) that root may sudo as anyone."""

from __future__ import annotations

import re

from harness.checks.catalog import GG_GROUP, GG_USER
from harness.checks.common import CMD_TIMEOUT, missing_command, verdict
from harness.checks.registry import board_check
from harness.checks.result import CheckResult
from harness.profiles import DeviceProfile
from harness.targets.base import Target

#: A `sudo -l` rule allowing any command as any user and any group: "(ALL : ALL) ALL", maybe NOPASSWD.
_SUDO_ANY = re.compile(r"\(\s*ALL\s*:\s*ALL\s*\)\s*(?:NOPASSWD:\s*)?ALL\b")


def _names(text: str | None) -> set[str]:
    return {line.split(":", 1)[0] for line in (text or "").splitlines() if ":" in line}


@board_check("users")
def users(target: Target, profile: DeviceProfile) -> CheckResult:
    """ggc_user in /etc/passwd and ggc_group in /etc/group; on V2 also `sudo -l` allowing (ALL : ALL)."""
    problems = []
    if GG_USER not in _names(target.read_text("/etc/passwd")):
        problems.append(f"user {GG_USER} is not in /etc/passwd")
    if GG_GROUP not in _names(target.read_text("/etc/group")):
        problems.append(f"group {GG_GROUP} is not in /etc/group")
    sudo = ""
    if profile.greengrass == "v2":
        res = target.run(["sudo", "-n", "-l"], timeout=CMD_TIMEOUT)
        if missing_command(res):
            problems.append("sudo is not installed")
        elif not (res.ok and _SUDO_ANY.search(res.stdout)):
            problems.append("`sudo -n -l` does not allow root to run commands as any user and group")
        else:
            sudo = "; root may sudo as any user and group"
    if problems:
        return verdict(False, f"Not ready for components: {'; '.join(problems)}.")
    return verdict(True, f"User {GG_USER} and group {GG_GROUP} exist{sudo}.")
