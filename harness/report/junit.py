"""junit.xml for CI systems (Jenkins, GitLab): one testsuite per (suite, profile).

Follows the Jenkins junit-10 schema, the one CI parsers accept: only the attributes it allows, ``time`` as
plain seconds. Informative and non-required results that failed are written as ``skipped`` with the real
outcome in the message, as pytest does for xfail: CI shows them, but they do not turn a passing run red.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import TYPE_CHECKING

from harness.records import TestRecord
from harness.report.status import BAD_OUTCOMES, counts_toward_verdict
from harness.report.text import display_text, first_line

if TYPE_CHECKING:
    from harness.report.run import Run


def render_junit(run: Run, now: datetime) -> str:
    """junit.xml text for ``run`` (``now`` is unused today; kept so every writer has the same signature)."""
    del now
    groups: dict[tuple[str, str], list[TestRecord]] = {}
    for record in run.tests:
        groups.setdefault((record.suite, record.profile), []).append(record)

    name = f"gg-harness run {run.run_id}" + (" (partial)" if run.partial else "")
    root = ET.Element("testsuites", name=display_text(name))
    totals = {"tests": 0, "failures": 0, "errors": 0}
    total_time = 0.0
    for (suite, profile), records in groups.items():
        element, counts, seconds = _testsuite(run, suite, profile, records)
        root.append(element)
        for key in totals:
            totals[key] += counts[key]
        total_time += seconds
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(total_time))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _testsuite(
    run: Run, suite: str, profile: str, records: list[TestRecord]
) -> tuple[ET.Element, dict[str, int], float]:
    counts = {"tests": len(records), "failures": 0, "errors": 0, "skipped": 0}
    seconds = sum(r.duration_s for r in records)
    element = ET.Element("testsuite", name=display_text(f"{suite}.{profile}"))
    properties = ET.SubElement(element, "properties")
    fixed = {
        "run_id": run.run_id,
        "harness_version": run.harness_version,
        "profile": profile,
        "suite": suite,
        "partial": "true" if run.partial else "false",
    }
    extra = {k: _prop(v) for k, v in run.profile_properties.get(profile, {}).items() if k not in fixed}
    for name, value in {**fixed, **extra}.items():
        ET.SubElement(properties, "property", name=display_text(name), value=display_text(value))
    for record in records:
        kind = _kind(record)
        if kind != "passed":
            counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] += 1
        element.append(_testcase(record, kind))
    element.set("tests", str(counts["tests"]))
    element.set("failures", str(counts["failures"]))
    element.set("errors", str(counts["errors"]))
    element.set("skipped", str(counts["skipped"]))
    element.set("time", _seconds(seconds))
    element.set("timestamp", run.started.isoformat())
    element.set("package", display_text(suite))
    return element, counts, seconds


def _kind(record: TestRecord) -> str:
    """The JUnit element a record becomes: failure, error, skipped or passed."""
    if record.outcome in BAD_OUTCOMES and not counts_toward_verdict(record):
        return "skipped"
    return {"failed": "failure", "error": "error", "skipped": "skipped"}.get(record.outcome, "passed")


def _testcase(record: TestRecord, kind: str) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname=display_text(f"{record.suite}.{record.profile}"),
        name=display_text(record.id),
        time=_seconds(record.duration_s),
    )
    if kind != "passed":
        message = first_line(record.message) or record.outcome
        if kind == "skipped" and record.outcome in BAD_OUTCOMES:
            why = "informative" if record.informative else "not required"
            message = f"{why} result, not a verdict: {record.outcome}: {message}"
        child = ET.SubElement(case, kind, message=message)
        if kind != "skipped":
            child.set("type", record.outcome)
        child.text = _body(record)
    else:
        body = _body(record)
        if body:
            ET.SubElement(case, "system-out").text = body
    return case


def _body(record: TestRecord) -> str:
    """The text CI shows for a test: what was required, where from, what happened, where the log is."""
    parts = []
    if record.requirement:
        parts.append(f"requirement: {record.requirement}")
    if record.source:
        parts.append(f"source: {record.source}")
    if record.informative:
        parts.append("informative: yes (recorded for information, not a conformance verdict)")
    if record.message:
        parts.append(f"message: {record.message}")
    if record.evidence:
        parts.append(f"evidence:\n{record.evidence}")
    if record.log:
        parts.append(f"log: {record.log}")
    for key, value in record.properties.items():
        parts.append(f"property {key}: {value}")
    return display_text("\n".join(parts))


def _prop(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _seconds(value: float) -> str:
    """Seconds the way the junit-10 SUREFIRE_TIME pattern accepts them (no exponent, no sign)."""
    return f"{max(value, 0.0):.3f}"
