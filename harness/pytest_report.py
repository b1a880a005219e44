"""Turns a pytest session into a conformance report that is rewritten after every test.

Tests hand over their row with the ``record_result`` fixture (board checks return rich results); any other
test gets a row built from its pytest outcome and markers. Rows travel inside the test report's
``user_properties``, so under pytest-xdist the controller, which sees every report, writes one report for all
workers, and an interrupted run still leaves a partial one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import pytest

from harness.records import TestRecord
from harness.report import Run

RECORD_KEY = "harness_record"
PROFILE_KEY = "harness_profile_properties"


def suite_of(nodeid: str) -> str:
    """``scenarios/<suite>/test_x.py::...`` -> ``<suite>``; anything else -> the module name."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if "scenarios" in parts and parts.index("scenarios") + 2 < len(parts) + 1:
        i = parts.index("scenarios")
        if i + 1 < len(parts) - 1:
            return parts[i + 1]
    return Path(path).stem.removeprefix("test_")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]


class ReportCollector:
    """Registered on the controller (or the only process) when ``--report-dir`` is given."""

    def __init__(self, report_dir: Path, run_id: str | None = None) -> None:
        self.report_dir = report_dir
        self.run = Run.start(run_id=run_id)
        self.rows: dict[str, TestRecord] = {}
        self.infra_error = False
        report_dir.mkdir(parents=True, exist_ok=True)
        self.run.write(report_dir)

    # -- building rows ---------------------------------------------------------------------------
    def _note_profile(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        name = props.get("harness_profile")
        if name and name not in self.run.profiles:
            self.run.add_profile(str(name), {})
        if PROFILE_KEY in props:
            profile, values = cast(tuple[str, dict[str, Any]], props[PROFILE_KEY])
            if profile not in self.run.profiles:
                self.run.add_profile(profile, values)
            else:
                self.run.profile_properties[profile] = values

    def _row(self, report: pytest.TestReport) -> TestRecord:
        props = dict(report.user_properties)
        if RECORD_KEY in props:
            return TestRecord.from_json(json.loads(str(props[RECORD_KEY])))
        name = report.nodeid.split("::")[-1]
        suite = suite_of(report.nodeid)
        return TestRecord(
            id=f"{suite}.{props.get('harness_test_id', name.removeprefix('test_'))}",
            suite=suite,
            profile=str(props.get("harness_profile", "")),
            outcome="passed",
            requirement=str(props.get("harness_requirement", "")),
            source=str(props.get("harness_source", "")),
        )

    def _log(self, report: pytest.TestReport, row: TestRecord) -> str:
        rel = Path("logs") / _safe(row.profile or "host") / f"{_safe(row.id)}.log"
        path = self.report_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = [f"test: {report.nodeid}", f"outcome: {row.outcome}", ""]
        if row.message:
            text += ["message:", row.message, ""]
        if row.evidence:
            text += ["evidence:", row.evidence, ""]
        for title, content in report.sections:
            text += [f"--- {title} ---", content]
        if report.longrepr is not None and report.outcome != "passed":
            text += ["--- failure ---", str(report.longreprtext)]
        with path.open("a") as fh:
            fh.write("\n".join(text) + "\n")
        return str(rel)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        key = report.nodeid
        self._note_profile(report)
        if report.when == "setup" and report.outcome == "passed":
            return
        if report.when == "teardown" and report.outcome == "passed":
            return
        row = self.rows.get(key) or self._row(report)
        props = dict(report.user_properties)
        if props.get("harness_infra"):
            self.infra_error = True
            row.properties["infra"] = "true"
        if RECORD_KEY not in props or (report.outcome == "failed" and report.when != "call"):
            row.duration_s = round(row.duration_s + report.duration, 3)
            if report.outcome == "skipped":
                row.outcome = "skipped"
                row.message = row.message or _skip_reason(report)
            elif report.outcome == "failed":
                row.outcome = "failed" if report.when == "call" and _is_assertion(report) else "error"
                row.message = row.message or _first_line(report)
        if hasattr(report, "wasxfail") and row.outcome == "skipped":
            row.outcome = "failed"  # an informative failure is reported as xfail to keep pytest green
        row.log = self._log(report, row)
        self.rows[key] = row
        self.run.tests = list(self.rows.values())
        self.run.write(self.report_dir)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        reason = (
            "interrupted"
            if exitstatus == pytest.ExitCode.INTERRUPTED
            else ("internal error" if interrupted else "")
        )
        self.run.tests = list(self.rows.values())
        self.run.finish(partial=interrupted, reason=reason)
        self.run.write(self.report_dir)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"conformance report: {self.report_dir / 'index.html'}")


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(getattr(report, "wasxfail", "") or report.longreprtext)


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:500] if crash.message else ""
    return report.longreprtext.strip().splitlines()[-1][:500] if report.longreprtext.strip() else ""


def _is_assertion(report: pytest.TestReport) -> bool:
    """A failed check (assert, pytest.fail) is a failure; any other exception means the test could not run."""
    crash = getattr(report.longrepr, "reprcrash", None)
    msg = str(getattr(crash, "message", "")) if crash is not None else ""
    return msg.startswith(("AssertionError", "assert ", "Failed"))


def attach_record(item: pytest.Item, record: TestRecord) -> None:
    """Store a test's own row on its pytest item (copied into the report's user_properties)."""
    item.user_properties.append((RECORD_KEY, json.dumps(record.to_json())))


def attach_profile(item: pytest.Item, profile: str, properties: dict[str, Any]) -> None:
    item.user_properties.append((PROFILE_KEY, (profile, properties)))
