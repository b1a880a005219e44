"""Board checks: one function per row of the board requirements table, each ``check(target, profile)``.

Run them through ``run_check``/``run_checks``, which skip rows that do not apply to the profile, record the
evidence and turn any exception into an ``error`` result.
"""

from harness.checks.catalog import ROWS, Row
from harness.checks.registry import CHECKS, Check, board_check, run_check, run_checks
from harness.checks.result import STATUSES, CheckResult, Status

__all__ = ["CHECKS", "ROWS", "STATUSES", "Check", "CheckResult", "Row", "Status", "board_check", "run_check",
           "run_checks"]
