"""The record shapes every part of the harness reports in.

One shape per kind of thing, used everywhere: a ``TestRecord`` for every conformance result (board check,
scenario) and a ``Measurement`` for every timed operation (the locust request-event shape, so the same
record flows through locust, pytest and the fleet model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["passed", "failed", "skipped", "error"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "skipped", "error")


@dataclass
class TestRecord:
    """One row of a conformance report (a row of results.json ``tests``)."""

    __test__ = False  # not a pytest test class

    id: str
    suite: str
    profile: str
    outcome: Outcome
    duration_s: float = 0.0
    requirement: str = ""
    source: str = ""
    evidence: str = ""
    informative: bool = False
    log: str = ""
    message: str = ""
    required: bool = True
    properties: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Measurement:
    """One timed operation, in locust's request-event shape (response_time in milliseconds)."""

    request_type: str
    name: str
    response_time: float
    response_length: int = 0
    exception: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
