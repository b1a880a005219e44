"""A conformance run as it builds up, and its report directory (results.json, junit.xml, index.html).

A run is partial until ``finish()``: the pytest plugin calls ``write()`` after every test, so whatever kills
the run (Ctrl-C, a CI timeout, a host crash) leaves a readable report that says ``partial: true``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.records import OUTCOMES, TestRecord
from harness.report.atomic import write_text_atomic
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.results_json import RESULTS_NAME, PropertyValue, parse_results, render_results

JUNIT_NAME = "junit.xml"
HTML_NAME = "index.html"


def utc_now() -> datetime:
    """The current UTC time to the second, the precision results.json shows."""
    return datetime.now(UTC).replace(microsecond=0)


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by start time, e.g. ``20261123-044501-ab12``.

    The random suffix keeps apart runs started in the same second (CI matrix jobs).
    """
    return f"{(now or utc_now()).astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class Run:
    """Everything a report shows. ``load`` is the results.json load block (fleet load runs only)."""

    run_id: str
    started: datetime
    profiles: list[str] = field(default_factory=list)
    profile_properties: dict[str, dict[str, PropertyValue]] = field(default_factory=dict)
    tests: list[TestRecord] = field(default_factory=list)
    load: dict[str, Any] | None = None
    finished: datetime | None = None
    partial: bool = True
    partial_reason: str = ""
    harness_version: str = __version__

    def __post_init__(self) -> None:
        for name in ("started", "finished"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"Run.{name} must be timezone-aware (UTC), got {value!r}")
        for record in self.tests:
            _check_outcome(record)

    @classmethod
    def start(
        cls,
        profiles: dict[str, dict[str, PropertyValue]] | list[str] | None = None,
        *,
        run_id: str | None = None,
        now: datetime | None = None,
    ) -> Run:
        """A new, still partial run; ``profiles`` maps each profile to its report properties, or lists names.

        Partial is the default state so that any report written before ``finish()`` says so.
        """
        started = now or utc_now()
        run = cls(run_id=run_id or new_run_id(started), started=started)
        if isinstance(profiles, dict):
            for name, props in profiles.items():
                run.add_profile(name, props)
        else:
            for name in profiles or []:
                run.add_profile(name)
        return run

    def add_profile(self, name: str, properties: dict[str, PropertyValue] | None = None) -> None:
        """Declare a profile (column of the matrix) with the properties the report records for it."""
        if name not in self.profiles:
            self.profiles.append(name)
        if properties:
            self.profile_properties.setdefault(name, {}).update(properties)

    def add(self, record: TestRecord) -> None:
        """Record one result; an unknown profile becomes a new column."""
        _check_outcome(record)
        self.add_profile(record.profile)
        self.tests.append(record)

    def finish(self, *, partial: bool = False, reason: str = "", now: datetime | None = None) -> None:
        """Mark the run complete, or, with ``partial=True``, stopped early for ``reason`` (exit status 3)."""
        self.finished = now or utc_now()
        self.partial = partial
        self.partial_reason = reason

    def write(self, report_dir: Path, *, durable: bool | None = None) -> None:
        """Write results.json, junit.xml and index.html, each replaced atomically.

        Cheap enough to call after every test. results.json goes last, so when it exists the other two are at
        least as new. ``durable`` (default: only once the run is finished) also fsyncs.
        """
        now = utc_now()
        sync = (not self.partial) if durable is None else durable
        write_text_atomic(report_dir / JUNIT_NAME, render_junit(self, now), durable=sync)
        write_text_atomic(report_dir / HTML_NAME, render_html(self, now), durable=sync)
        write_text_atomic(report_dir / RESULTS_NAME, render_results(self, now), durable=sync)

    @classmethod
    def read(cls, path: Path) -> Run:
        """Read a run back from a report directory or a results.json file (``InputError`` names the file).

        Named ``read`` rather than ``load`` because ``load`` is the results.json load block.
        """
        file = path / RESULTS_NAME if path.is_dir() else path
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            from harness.errors import InputError

            raise InputError(f"{file}: cannot read results: {exc.strerror or exc}") from exc
        doc = parse_results(text, str(file))
        return cls(
            run_id=doc.run_id,
            harness_version=doc.harness_version,
            started=doc.started.astimezone(UTC),
            finished=doc.finished.astimezone(UTC),
            partial=doc.partial,
            partial_reason=doc.partial_reason,
            profiles=list(doc.profiles),
            profile_properties={p: dict(v) for p, v in doc.profile_properties.items()},
            tests=[TestRecord.from_json(t.model_dump()) for t in doc.tests],
            load=doc.load.model_dump(mode="json") if doc.load is not None else None,
        )


def _check_outcome(record: TestRecord) -> None:
    """Reject an unknown outcome when it is recorded, not later inside a writer."""
    if record.outcome not in OUTCOMES:
        where = f"test {record.id!r} on {record.profile}"
        raise ValueError(f"{where}: outcome {record.outcome!r} not in {OUTCOMES}")
