"""Which results decide a run's verdict, and the exit status that follows (cli-and-results.md).

Kept in one place because the exit status, the JUnit failure counts and the HTML verdict must agree: an
informative or non-required result is always reported but never fails the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness.errors import EXIT_FAILED, EXIT_OK
from harness.records import OUTCOMES, Outcome, TestRecord

if TYPE_CHECKING:
    from harness.report.run import Run

BAD_OUTCOMES: frozenset[Outcome] = frozenset({"failed", "error"})


def counts_toward_verdict(record: TestRecord) -> bool:
    """True when ``record`` can fail the run: it is required and not merely informative."""
    return record.required and not record.informative


def verdict_failures(tests: Iterable[TestRecord]) -> list[TestRecord]:
    """The results that make the run fail: required, not informative, and failed or errored."""
    return [t for t in tests if counts_toward_verdict(t) and t.outcome in BAD_OUTCOMES]


def summarize(tests: Iterable[TestRecord]) -> dict[Outcome, int]:
    """Raw outcome counts over every test, in the key order of results.json ``summary``."""
    counts: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
    for t in tests:
        counts[t.outcome] += 1
    return counts


def exit_status(run: Run) -> int:
    """0 when every required test passed or was skipped, 1 when one failed or errored.

    Status 3 (the run could not complete) is the caller's call: only it knows whether the infrastructure
    failed, and it should still write the partial report first.
    """
    return EXIT_FAILED if verdict_failures(run.tests) else EXIT_OK
