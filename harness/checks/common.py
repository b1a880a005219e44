"""Small helpers the checks share: building results, parsing versions, argv for shell snippets.

Shell is used only where a loop or redirection on the device is the point (resolving commands on the
device's PATH, writing a script to /tmp); arguments are passed as positional parameters, never spliced into
the script text, so no name can break the quoting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.checks.result import CheckResult, Status
from harness.profiles import DeviceProfile
from harness.targets.base import RunResult

#: Per-command timeout: generous because an emulated CPU can be 10-50x slower than the host.
CMD_TIMEOUT = 60.0
#: `sh -c` exit status when the command was not found, and when it was found but could not be executed.
NOT_FOUND, NOT_EXECUTABLE = 127, 126
SIGILL_STATUS = 128 + 4

_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def sh(script: str, *args: str) -> list[str]:
    """argv running ``script`` with ``sh``, ``args`` as $1..$n."""
    return ["sh", "-c", script, "sh", *args]


def parse_version(text: str) -> tuple[int, ...] | None:
    """The first dotted version number in ``text`` (``"2.36-9"`` -> (2, 36))."""
    m = _VERSION.search(text)
    if m is None:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def fmt_version(version: Sequence[int]) -> str:
    return ".".join(str(v) for v in version)


def at_least(version: Sequence[int], minimum: Sequence[int]) -> bool:
    """Compare versions padded with zeros (``(4, 4) >= (4, 4, 0)``)."""
    n = max(len(version), len(minimum))
    return tuple(version) + (0,) * (n - len(version)) >= tuple(minimum) + (0,) * (n - len(minimum))


def generation(profile: DeviceProfile) -> str:
    return "Greengrass V1" if profile.greengrass == "v1" else "Greengrass V2"


def verdict(
    ok: bool,
    message: str,
    requirement: str = "",
    *,
    source: str = "",
    informative: bool = False,
    notes: str = "",
) -> CheckResult:
    """A passed/failed result; the registry fills in id, evidence of the recorded commands and defaults."""
    status: Status = "passed" if ok else "failed"
    return CheckResult("", status, message, notes, requirement, source, informative)


def error(message: str, requirement: str = "", *, informative: bool = False, notes: str = "") -> CheckResult:
    """The check could not decide (e.g. a command it needs is missing or misbehaved)."""
    return CheckResult("", "error", message, notes, requirement, "", informative)


def missing_command(res: RunResult) -> bool:
    """Whether ``res`` says its command does not exist on the device (shell and nsenter both exit 127)."""
    return res.exit_status == NOT_FOUND
