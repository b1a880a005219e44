"""The outcome of one board check, in the shape every report renders.

A result always carries what was seen (``evidence``), what was required with the threshold actually applied
(``requirement``) and where the requirement comes from (``source``), so a failed row explains itself without
the reader re-running anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from harness.records import TestRecord

Status = Literal["passed", "failed", "skipped", "error"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "skipped", "error")


@dataclass
class CheckResult:
    """One row of the board suite.

    ``informative`` marks a result that describes the host rather than the device (kernel facts seen through
    qemu-user): reports show it, but it does not decide conformance.
    """

    id: str
    status: Status
    message: str
    evidence: str = ""
    requirement: str = ""
    source: str = ""
    informative: bool = False
    duration_s: float = 0.0

    @property
    def counts(self) -> bool:
        """Whether this result decides conformance (a non-informative failure or error fails the board)."""
        return not self.informative and self.status in ("failed", "error")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_record(self, profile: str, suite: str = "board") -> TestRecord:
        """The report row (``board.<id>``) for this result."""
        return TestRecord(
            id=f"{suite}.{self.id}",
            suite=suite,
            profile=profile,
            outcome=self.status,
            duration_s=self.duration_s,
            requirement=self.requirement,
            source=self.source,
            evidence=self.evidence,
            informative=self.informative,
            message=self.message,
            required=not self.informative,
        )
