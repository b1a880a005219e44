"""The board checks by id, and the one way to run them safely.

``run_check`` is what suites and the CLI call: it applies the skip rules of the requirements table, records
every command as evidence and turns anything unexpected (a timeout, a lost target, a bug in a check) into an
``error`` result with the reason. A check can fail or error, but never pass because it crashed.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from harness.checks.catalog import ROW_BY_ID, ROWS, Row
from harness.checks.recorder import RecordingTarget
from harness.checks.result import CheckResult
from harness.errors import CommandTimeout, InputError
from harness.profiles import DeviceProfile
from harness.targets.base import Target

CheckFunc = Callable[[Target, DeviceProfile], CheckResult]

HOST_KERNEL_NOTE = (
    "note: host kernel seen through qemu-user: /proc, /sys and uname describe the machine running the "
    "harness, not the device, so this row is informative"
)


@dataclass(frozen=True)
class Check:
    """A row of the requirements table and the function that checks it."""

    row: Row
    func: CheckFunc

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def title(self) -> str:
        return self.row.title

    def applies(self, profile: DeviceProfile) -> str | None:
        """None when the check applies to ``profile``, else the reason it is skipped."""
        return self.row.skip_reason(profile)

    def skipped(self, profile: DeviceProfile, reason: str) -> CheckResult:
        return CheckResult(self.id, "skipped", f"Skipped: {reason}.", "", self.row.requirement(profile),
                           self.row.source(profile))

    def execute(self, recorder: RecordingTarget, profile: DeviceProfile) -> CheckResult:
        """Run the check through ``recorder``; exceptions propagate (``run_check`` catches them)."""
        reason = self.applies(profile)
        if reason is not None:
            return self.skipped(profile, reason)
        start = time.monotonic()
        result = self.func(recorder, profile)
        parts = [recorder.evidence(), result.evidence.strip()]
        if result.informative and self.row.kernel_facts and recorder.kernel_is_host:
            parts.append(HOST_KERNEL_NOTE)
        return replace(
            result,
            id=self.id,
            evidence="\n\n".join(p for p in parts if p),
            requirement=result.requirement or self.row.requirement(profile),
            source=result.source or self.row.source(profile),
            duration_s=round(time.monotonic() - start, 3),
        )

    def __call__(self, target: Target, profile: DeviceProfile) -> CheckResult:
        return self.execute(RecordingTarget(target), profile)


_REGISTERED: dict[str, Check] = {}


def board_check(check_id: str) -> Callable[[CheckFunc], CheckFunc]:
    """Register ``func`` as the check of table row ``check_id``.

    The decorated function keeps its ``check(target, profile)`` signature and, called directly, also skips
    rows that do not apply and records evidence; only ``run_check`` additionally catches exceptions.
    """
    row = ROW_BY_ID[check_id]

    def decorate(func: CheckFunc) -> CheckFunc:
        check = Check(row, func)
        _REGISTERED[check_id] = check

        @functools.wraps(func)
        def wrapper(target: Target, profile: DeviceProfile) -> CheckResult:
            return check(target, profile)

        return wrapper

    return decorate


# Importing the check modules registers their functions; CHECKS then follows the table's order.
from harness.checks import (  # noqa: E402
    commands,
    filesystem,
    kernel,
    resources,
    runtimes,
    system,
    trust,
    users,
)

_MODULES = (commands, filesystem, kernel, resources, runtimes, system, trust, users)
CHECKS: dict[str, Check] = {row.id: _REGISTERED[row.id] for row in ROWS}


def run_check(check_id: str, target: Target, profile: DeviceProfile) -> CheckResult:
    """Run one check; any exception becomes an ``error`` result naming the reason, never a pass."""
    check = CHECKS.get(check_id)
    if check is None:
        raise InputError(f"unknown board check {check_id!r}; known checks: {', '.join(CHECKS)}")
    recorder = RecordingTarget(target)
    start = time.monotonic()
    try:
        return check.execute(recorder, profile)
    except CommandTimeout as exc:
        message = (f"Error: the command {' '.join(exc.argv)!r} did not finish within {exc.timeout:g} s, "
                   "so the check could not decide.")
        detail = ""
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"Error: the check could not run: {type(exc).__name__}: {first}".rstrip(": ") + "."
        detail = "traceback:\n" + "".join(traceback.format_exception(exc)[-6:]).rstrip()
    evidence = "\n\n".join(p for p in (recorder.evidence(), detail) if p)
    return CheckResult(check.id, "error", message, evidence, check.row.requirement(profile),
                       check.row.source(profile), duration_s=round(time.monotonic() - start, 3))


def run_checks(target: Target, profile: DeviceProfile, ids: Iterable[str] | None = None) -> list[CheckResult]:
    """Run ``ids`` (default: every check, in table order) and return their results."""
    return [run_check(i, target, profile) for i in (ids if ids is not None else CHECKS)]
