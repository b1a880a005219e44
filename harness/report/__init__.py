"""Conformance report writers: results.json (the contract), junit.xml (CI) and index.html (people).

Typical use from a pytest plugin: ``run = Run.start(profiles)``; after each test ``run.add(record)`` and
``run.write(report_dir)``; at the end ``run.finish()``, ``run.write(report_dir)`` and ``exit_status(run)``.
"""

from __future__ import annotations

from harness.report.merge import merge_report_dirs, merge_runs
from harness.report.results_json import RESULTS_NAME, SCHEMA_VERSION, Results, render_schema, results_schema
from harness.report.run import HTML_NAME, JUNIT_NAME, Run, new_run_id, utc_now
from harness.report.status import counts_toward_verdict, exit_status, summarize, verdict_failures

__all__ = [
    "HTML_NAME",
    "JUNIT_NAME",
    "RESULTS_NAME",
    "SCHEMA_VERSION",
    "Results",
    "Run",
    "counts_toward_verdict",
    "exit_status",
    "merge_report_dirs",
    "merge_runs",
    "new_run_id",
    "render_schema",
    "results_schema",
    "summarize",
    "utc_now",
    "verdict_failures",
]
