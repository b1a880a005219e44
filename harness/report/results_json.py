"""results.json: the machine-readable result of a run, part of the outside contract (cli-and-results.md).

The pydantic models here are the single definition of the format: they produce the file, validate a file read
back (merge, comparison between runs) and generate ``results.schema.json``. Add fields, never rename them, and
give every field added after schema version 1 a default so older files still load.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from harness.records import Outcome, TestRecord
from harness.report.status import summarize
from harness.report.text import clean_text

if TYPE_CHECKING:
    from harness.report.run import Run

SCHEMA_VERSION: Literal[1] = 1
RESULTS_NAME = "results.json"
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")

#: A profile property as recorded in the report (a rootfs cache key, whether the kernel is authoritative...).
PropertyValue = str | bool | int | float


class Summary(BaseModel):
    """Counts of raw outcomes over all tests, informative ones included (the exit status ignores those)."""

    passed: int = Field(ge=0)
    failed: int = Field(ge=0)
    skipped: int = Field(ge=0)
    error: int = Field(ge=0)
    total: int = Field(ge=0)


class TestResult(BaseModel):
    """One entry of ``tests``: a ``harness.records.TestRecord`` as JSON."""

    __test__ = False  # not a pytest test class

    id: str = Field(description="Stable across runs, e.g. board.ota_commands")
    suite: str
    profile: str
    outcome: Outcome
    duration_s: float = Field(ge=0)
    requirement: str
    source: str = Field(description="Where the requirement comes from (seed, document, issue)")
    evidence: str = Field(description="What was observed, in full")
    informative: bool = Field(description="Recorded for information; never decides the exit status")
    log: str = Field(description="Per-test log, relative to the report directory")
    message: str
    required: bool = Field(description="False for tests whose failure does not fail the run")
    properties: dict[str, str]


class Percentiles(BaseModel):
    """Latency percentiles in milliseconds; null when there was no sample (never a made-up 0)."""

    model_config = ConfigDict(extra="allow")

    p50: float | None
    p95: float | None
    p99: float | None


class Generator(BaseModel):
    """What the load generator itself cost, to tell a slow core from a saturated generator."""

    model_config = ConfigDict(extra="allow")

    cpu_s: float
    rss_mb: float


class Load(BaseModel):
    """The ``load`` block of a fleet load run."""

    model_config = ConfigDict(extra="allow")

    devices: int
    connected: int
    failed: int
    published: int
    received: int
    lost: int
    duplicates: int
    throughput_msg_s: float
    latency_ms: Percentiles
    connect_ms: Percentiles
    generator: Generator


class Results(BaseModel):
    """The whole of results.json."""

    schema_version: Literal[1]
    run_id: str
    harness_version: str
    started: AwareDatetime
    finished: AwareDatetime = Field(
        description="End of the run; for a partial report, the time of the last write"
    )
    partial: bool = Field(description="True while running and after an interrupted run: tests may be missing")
    partial_reason: str = Field(default="", description="Why the run is partial, when known")
    profiles: list[str]
    profile_properties: dict[str, dict[str, PropertyValue]]
    summary: Summary
    tests: list[TestResult]
    load: Load | None = None


def results_model(run: Run, now: datetime) -> Results:
    """The results.json model of ``run``; ``now`` stands in for ``finished`` while the run is going on."""
    tests = [_clean_record(r) for r in run.tests]
    counts = summarize(run.tests)
    return Results(
        schema_version=SCHEMA_VERSION,
        run_id=run.run_id,
        harness_version=run.harness_version,
        started=run.started,
        finished=run.finished or now,
        partial=run.partial,
        partial_reason=clean_text(run.partial_reason),
        profiles=list(run.profiles),
        profile_properties={p: dict(props) for p, props in run.profile_properties.items()},
        summary=Summary(**counts, total=len(run.tests)),
        tests=[TestResult.model_validate(t) for t in tests],
        load=Load.model_validate(run.load) if run.load is not None else None,
    )


def render_results(run: Run, now: datetime) -> str:
    """results.json text for ``run``; ``load`` is left out entirely when there is none, as the spec says."""
    data = results_model(run, now).model_dump(mode="json", exclude_none=False)
    if data.get("load") is None:
        data.pop("load", None)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def parse_results(text: str, source: str) -> Results:
    """Validate results.json text; errors name ``source`` and the offending field (raises ``InputError``)."""
    from pydantic import ValidationError

    from harness.errors import InputError

    try:
        return Results.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(f"{source}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from exc


def results_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of results.json, generated from the models so it cannot drift."""
    schema = Results.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gg-harness results.json",
        **schema,
    }


def render_schema() -> str:
    """The text of ``results.schema.json``, committed so that users can validate without this package."""
    return json.dumps(results_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> None:
    """Regenerate ``results.schema.json`` after a model change (a test fails until this has been run)."""
    path.write_text(render_schema(), encoding="utf-8")


def _clean_record(record: TestRecord) -> dict[str, Any]:
    data = record.to_json()
    for key, value in data.items():
        if isinstance(value, str):
            data[key] = clean_text(value)
    data["properties"] = {clean_text(str(k)): clean_text(str(v)) for k, v in record.properties.items()}
    return data
