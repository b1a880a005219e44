"""Errors the harness reports to users, each mapped to a documented exit status.

Exit statuses are part of the outside contract (see README): 2 for bad input, 3 for a run that could not
complete. Raising one of these instead of a bare exception is what keeps tracebacks away from users.
"""

from __future__ import annotations

from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3


class HarnessError(Exception):
    """Base of every error the CLI turns into a message and an exit status."""

    exit_status = EXIT_INFRA


class InputError(HarnessError):
    """Bad input from the user (profile, template, recipe, argument): exit 2, message names file and field."""

    exit_status = EXIT_USAGE


class InfraError(HarnessError):
    """The run could not complete (target, emulator or host problem): exit 3."""

    exit_status = EXIT_INFRA


class TargetError(InfraError):
    """A target could not be powered, reached or used."""


class CommandTimeout(TargetError):
    """A command on a target did not finish in time; carries the tail of what it printed."""

    def __init__(self, argv: list[str], timeout: float, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr
        tail = (stdout[-800:] + ("\n[stderr]\n" + stderr[-800:] if stderr else "")).strip()
        super().__init__(f"command {argv!r} did not finish within {timeout:g} s; last output:\n{tail}")


class UserlandMismatch(TargetError):
    """The target powered on, but its userland cannot run on its CPU (e.g. ARMv7 code on an ARMv6 core).

    Not an infrastructure failure: it is the board's arch requirement failing, and the board suite reports
    it as such.
    """


def run_teardown(steps: list[tuple[str, Callable[[], None]]]) -> list[str]:
    """Run every named teardown step in order, past failures; the failures as "what: why" lines.

    A stand that stops a core, a target and a network must try all of them even when the first fails, or a
    broken core would leave its target and namespace behind."""
    errors: list[str] = []
    for what, step in steps:
        try:
            step()
        except (HarnessError, OSError) as exc:
            errors.append(f"{what}: {exc}")
    return errors


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``kill PID`` cleans up exactly as Ctrl-C does.

    Why: every command and benchmark tears its targets, mounts and cgroups down in ``finally`` blocks; the
    default SIGTERM action would end the process without running them and leave them behind.
    """
    import signal

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
