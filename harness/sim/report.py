"""The simulate report: the harness's usual report directory, plus the storm plots and the raw metrics.

results.json and junit.xml get one informative row per simulated policy (suite ``simulate``), so tools that
read any harness report read these too; a prediction is not a conformance verdict, hence informative.
index.html gets a section with the reconnected-fraction and accept-queue plots; ``simulate.json`` holds every
metric and the time series for machines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from harness.records import TestRecord
from harness.report import HTML_NAME, Run, utc_now
from harness.report.atomic import write_text_atomic
from harness.report.html import render_html
from harness.sim.config import POLICY_TITLES
from harness.sim.metrics import SimMetrics
from harness.sim.plot import Line, line_chart

SIMULATE_NAME = "simulate.json"
SIMULATE_FORMAT = "gg-harness-simulate"
PROFILE = "fleet-model"
SOURCE = "scenarios.md 'fleet model'; issue #9"


def record_for(metrics: SimMetrics) -> TestRecord:
    """One report row for one simulated policy: the headline metrics as properties and as evidence."""
    cfg = metrics.config
    title = POLICY_TITLES.get(metrics.policy, metrics.policy)
    reached = metrics.t99_s is not None
    message = ""
    if not reached:
        share = 100.0 * metrics.reconnected / metrics.devices
        message = (
            f"only {metrics.reconnected} of {metrics.devices} devices ({share:.1f} %) reconnected within the "
            f"horizon of {cfg.horizon_s:g} s"
        )
    return TestRecord(
        id=f"simulate.{metrics.policy}",
        suite="simulate",
        profile=PROFILE,
        outcome="passed" if reached else "failed",
        duration_s=metrics.wall_s,
        requirement=(
            f"Predicted: {metrics.devices} devices reconnect after a core {cfg.event} using {title}; "
            "99 % are back within the simulated horizon"
        ),
        source=SOURCE,
        evidence=evidence_text(metrics),
        informative=True,
        message=message,
        properties=metrics.headline(),
    )


def evidence_text(m: SimMetrics) -> str:
    """The metrics as a short text, the way a person compares two policies."""
    cfg = m.config

    def t(v: float | None) -> str:
        return "never" if v is None else f"{v:.2f} s"

    return "\n".join(
        [
            f"policy {m.policy} ({POLICY_TITLES.get(m.policy, m.policy)}), base {cfg.base_s:g} s, "
            f"cap {cfg.cap_s:g} s; engine {m.engine}, seed {cfg.seed}",
            f"core: {cfg.concurrency} handshake slots, handshake median {cfg.handshake.median_s * 1000:g} ms "
            f"(mean {cfg.handshake.mean_s * 1000:.3g} ms), rate limit "
            f"{'none' if cfg.rate_limit_per_s is None else f'{cfg.rate_limit_per_s:g}/s'}, backlog "
            f"{'unbounded' if cfg.backlog is None else cfg.backlog}: capacity {cfg.capacity_per_s:.0f}/s",
            f"disruption: {cfg.event} of {cfg.outage_s:g} s, keep-alive {cfg.keepalive_s:g} s, "
            f"connect timeout {cfg.connect_timeout_s:g} s",
            f"reconnected: {m.reconnected}/{m.devices}; 50 % at {t(m.t50_s)}, 95 % at {t(m.t95_s)}, "
            f"99 % at {t(m.t99_s)}, all at {t(m.t100_s)}",
            f"attempts per device: mean {m.attempts_mean:.2f}, p50 {m.attempts_p50:g}, "
            f"p99 {m.attempts_p99:g}, max {m.attempts_max} (total {m.attempts_total})",
            f"core work: {m.handshakes} handshakes, {m.wasted_handshakes} wasted (client gone); "
            f"{m.timeouts} timed out, {m.rejected} dropped by a full backlog "
            f"({m.syn_retransmits} SYNs retransmitted), "
            f"{m.down_failures} hit a down core",
            f"peaks: {m.peak_connect_rate_per_s:.0f} connects/s, {m.peak_attempt_rate_per_s:.0f} attempts/s, "
            f"accept queue {m.peak_queue}",
        ]
    )


def build_run(results: Sequence[SimMetrics], profile_properties: dict[str, Any] | None = None) -> Run:
    """A finished ``Run`` holding one row per result."""
    run = Run.start({PROFILE: dict(profile_properties or {})})
    for m in results:
        run.add(record_for(m))
    run.finish()
    return run


def write_report(
    report_dir: Path,
    results: Sequence[SimMetrics],
    *,
    profile_properties: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> Run:
    """Write results.json, junit.xml, index.html (with the storm plots) and simulate.json."""
    run = build_run(results, profile_properties)
    run.write(report_dir)
    html = render_html(run, utc_now())
    section = storm_section(results)
    marker = "<footer>" if "<footer>" in html else "</main>"
    html = html.replace(marker, section + "\n" + marker, 1)
    write_text_atomic(report_dir / HTML_NAME, html, durable=True)
    doc = {
        "format": SIMULATE_FORMAT,
        "version": 1,
        "run_id": run.run_id,
        "calibration": calibration,
        "results": [m.to_json() for m in results],
    }
    write_text_atomic(report_dir / SIMULATE_NAME, json.dumps(doc, indent=1) + "\n", durable=True)
    return run


def storm_section(results: Sequence[SimMetrics]) -> str:
    """The index.html section: a table of the headline metrics and the two time-series plots."""
    rows = []
    for m in sorted(results, key=lambda r: (r.t95_s is None, r.t95_s or 0.0)):
        cells = [
            f"<code>{escape(m.policy)}</code>",
            _s(m.t50_s),
            _s(m.t95_s),
            _s(m.t99_s),
            f"{m.attempts_mean:.2f}",
            f"{m.attempts_total}",
            f"{m.handshakes} / {m.wasted_handshakes}",
            f"{m.peak_connect_rate_per_s:.0f}",
            f"{m.peak_queue}",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "policy",
            "50 %",
            "95 %",
            "99 %",
            "attempts / device",
            "attempts",
            "handshakes / wasted",
            "peak connects/s",
            "peak queue",
        )
    )
    reconnected = [Line(_label(m), m.series.times(), m.series.reconnected_fraction) for m in results]
    queue = [Line(_label(m), m.series.times(), m.series.queue.astype(float)) for m in results]
    charts = line_chart(
        "Reconnected fraction of the fleet over time, per policy",
        reconnected,
        "seconds since the disruption",
        "reconnected fraction",
        y_max=1.0,
    )
    zoom = _zoom_s(results)
    if zoom is not None:
        charts += f"<h3>The first {zoom:g} s</h3>" + line_chart(
            f"Reconnected fraction over the first {zoom:g} s, per policy",
            [_clip(ln, zoom) for ln in reconnected],
            "seconds since the disruption",
            "reconnected fraction",
            y_max=1.0,
        )
    charts += line_chart(
        "Accept (handshake) queue length over time, per policy",
        queue,
        "seconds since the disruption",
        "attempts waiting",
    )
    return (
        '<section id="simulate"><h2>Fleet model</h2>'
        "<p>Predicted reconnect storm, fastest to 95 % first. Times are seconds since the disruption; "
        "<em>wasted</em> handshakes finished after their device had given up.</p>"
        f'<div class="scroll"><table class="kv"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
        f"</tbody></table></div>{charts}"
        '<p>Raw metrics and time series: <a href="simulate.json">simulate.json</a></p></section>'
    )


def _zoom_s(results: Sequence[SimMetrics]) -> float | None:
    """A shorter time range for a second plot when one policy's storm dwarfs the others' (the usual case
    with un-jittered exponential backoff), so the fast curves are not squeezed against the axis."""
    ends = sorted(m.t99_s if m.t99_s is not None else m.config.horizon_s for m in results)
    if len(ends) < 2 or ends[-1] < 3 * ends[0]:
        return None
    return float(f"{1.5 * ends[len(ends) // 2]:.2g}")


def _clip(line: Line, until: float) -> Line:
    keep = line.x <= until
    return Line(line.label, line.x[keep], line.y[keep])


def _label(m: SimMetrics) -> str:
    return f"{m.policy} ({POLICY_TITLES.get(m.policy, m.policy)})"


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}&nbsp;s"
