"""index.html: the human view of a run, one self-contained file (inline CSS, JS and SVG, nothing external).

Problems come first everywhere (matrix rows, details), because the reader's question is "what broke". Every
piece of run data goes through ``html.escape``: evidence is console output and may contain anything, including
``</pre><script>``. A hash-pinned Content-Security-Policy is the second line of defence.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from harness.records import TestRecord
from harness.report.html_assets import CSS, JS
from harness.report.load_plots import latency_histogram_chart, memory_charts, series_charts
from harness.report.status import BAD_OUTCOMES, counts_toward_verdict, summarize, verdict_failures
from harness.report.svg import bar_chart
from harness.report.text import display_text

if TYPE_CHECKING:
    from harness.report.run import Run

SYMBOL = {"passed": "✓ passed", "failed": "✗ failed", "error": "! error", "skipped": "– skipped"}
INFO_TEXT = (
    "Informative: recorded for information, not a conformance verdict, so it never fails the run; "
    "for example a kernel check on a profile whose kernel is not authoritative "
    "(under qemu-user the host kernel answers)."
)
OPTIONAL_TEXT = "Optional: not a required test, so its failure does not fail the run."
_PERCENTILE_KEY = re.compile(r"^(p\d+(\.\d+)?|min|max|mean|avg)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _e(value: object) -> str:
    """Escape any run data for element text and quoted attributes alike."""
    return escape(display_text(str(value)), quote=True)


def _wbr(test_id: str) -> str:
    """Escaped test id that a narrow screen may break after its dots rather than mid-word."""
    return _e(test_id).replace(".", ".<wbr>")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


CSP = (
    f"default-src 'none'; style-src {_csp_hash(CSS)}; script-src {_csp_hash(JS)}; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)


def render_html(run: Run, now: datetime) -> str:
    """index.html text for ``run``; ``now`` is the time of this write (the finish time of a partial run)."""
    anchors = _anchors(run.tests)
    ordered = sorted(run.tests, key=lambda r: (_rank(r), r.id, _profile_index(run, r.profile)))
    title = f"{'PARTIAL · ' if run.partial else ''}Conformance run {run.run_id}"
    body = [
        _header(run, now),
        _summary(run),
        _profiles(run),
        _matrix(run, anchors),
        _details(ordered, anchors),
        _load(run.load) if run.load is not None else "",
        f"<footer>Written by gg-harness {_e(run.harness_version)} at {_e(_iso(now))}. Machine-readable: "
        '<a href="results.json">results.json</a> · <a href="junit.xml">junit.xml</a></footer>',
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(part for part in body if part)
        + f"\n</main>\n<script>{JS}</script>\n</body>\n</html>\n"
    )


def _header(run: Run, now: datetime) -> str:
    end = run.finished or now
    finished = _e(_iso(run.finished)) if run.finished else f"not finished (last update {_e(_iso(now))})"
    rows = [
        ("Run", f"<code>{_e(run.run_id)}</code>"),
        ("Harness", _e(run.harness_version)),
        ("Started", _e(_iso(run.started))),
        ("Finished", finished),
        ("Duration", _e(_duration((end - run.started).total_seconds()))),
        ("Profiles", ", ".join(f"<code>{_e(p)}</code>" for p in run.profiles) or "none"),
    ]
    meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    banner = ""
    if run.partial:
        reason = f" Reason: {_e(run.partial_reason)}." if run.partial_reason else ""
        banner = (
            '<div class="banner" role="alert" id="partial"><strong>PARTIAL / interrupted</strong> — this run '
            f"did not finish, so tests may be missing and the verdict is not final.{reason}</div>"
        )
    return f'<header><h1>Conformance report</h1>{banner}<dl class="meta">{meta}</dl></header>'


def _summary(run: Run) -> str:
    counts = summarize(run.tests)
    if run.partial:
        verdict, cls = "INCOMPLETE", "v-partial"
    elif verdict_failures(run.tests):
        verdict, cls = "FAIL", "v-fail"
    else:
        verdict, cls = "PASS", "v-pass"
    cards = [_card(cls, verdict, "verdict")]
    for outcome in ("passed", "failed", "error", "skipped"):
        cards.append(_card(outcome, counts[outcome], outcome))
    cards.append(_card("", len(run.tests), "total"))
    return f'<section id="summary" class="cards">{"".join(cards)}</section>'


def _card(cls: str, value: object, label: str) -> str:
    return f'<div class="card {cls}"><span class="n">{value}</span><span class="k">{label}</span></div>'


def _profiles(run: Run) -> str:
    keys = list(dict.fromkeys(k for p in run.profiles for k in run.profile_properties.get(p, {})))
    if not keys:
        return ""
    head = "".join(f"<th>{_e(p)}</th>" for p in run.profiles)
    rows = []
    for key in keys:
        cells = "".join(
            f"<td>{_e(_value(run.profile_properties.get(p, {}).get(key, '—')))}</td>" for p in run.profiles
        )
        rows.append(f"<tr><th><code>{_e(key)}</code></th>{cells}</tr>")
    return (
        '<section id="profiles"><h2>Profiles</h2><div class="scroll"><table class="props"><thead><tr>'
        "<th>property</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _matrix(run: Run, anchors: dict[int, str]) -> str:
    cells: dict[str, dict[str, TestRecord]] = {}
    for record in run.tests:
        cells.setdefault(record.id, {})[record.profile] = record
    order = sorted(cells, key=lambda i: (min(_rank(r) for r in cells[i].values()), i))
    head = "".join(f"<th>{_e(p)}<br><small>{_profile_counts(run, p)}</small></th>" for p in run.profiles)
    rows = []
    for test_id in order:
        by_profile = cells[test_id]
        records = list(by_profile.values())
        badges = ""
        informative = [r.profile for r in records if r.informative]
        if informative:
            badges += (
                f' <span class="badge b-info" title="informative on: {_e(", ".join(informative))}">i</span>'
            )
        if any(not r.required for r in records):
            badges += ' <span class="badge b-opt" title="optional">opt</span>'
        tds = []
        for profile in run.profiles:
            rec = by_profile.get(profile)
            if rec is None:
                label = "not run yet" if run.partial else "not run"
                tds.append(f'<td class="o-none">{label}</td>')
                continue
            inf, mark = (" inf", ' <span class="badge b-info">i</span>') if rec.informative else ("", "")
            tds.append(
                f'<td class="o-{rec.outcome}{inf}" title="{_e(rec.message or rec.outcome)}">'
                f'<a href="#{anchors[id(rec)]}">{SYMBOL[rec.outcome]}{mark}</a></td>'
            )
        ok = "" if any(_rank(r) <= 2 for r in records) else ' class="ok"'
        requirement = _e(records[0].requirement)
        rows.append(
            f'<tr{ok}><th class="test" title="{requirement}"><code>{_wbr(test_id)}</code>{badges}</th>'
            f"{''.join(tds)}</tr>"
        )
    if not rows:
        return '<section id="matrix"><h2>Results</h2><p>No test results yet.</p></section>'
    return (
        '<section id="matrix"><h2>Results</h2><div class="controls"><label><input type="checkbox" '
        'id="only-problems"> show only failures and errors</label></div>'
        '<div class="scroll"><table class="matrix"><thead><tr><th class="test">test</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f'<div class="legend"><p><span class="badge b-info">i</span> {_e(INFO_TEXT)}</p>'
        f'<p><span class="badge b-opt">opt</span> {_e(OPTIONAL_TEXT)}</p>'
        "<p>Failures and errors come first. Select a cell for its requirement, evidence and log.</p>"
        "</div></section>"
    )


def _details(ordered: list[TestRecord], anchors: dict[int, str]) -> str:
    items = []
    for rec in ordered:
        bad = rec.outcome in BAD_OUTCOMES
        classes = f"rec o-{rec.outcome}" + ("" if bad else " ok")
        is_open = " open" if bad and counts_toward_verdict(rec) else ""
        badges = ' <span class="badge b-info" title="informative">i</span>' if rec.informative else ""
        badges += "" if rec.required else ' <span class="badge b-opt">opt</span>'
        rows = [("Requirement", _e(rec.requirement or "—")), ("Source", _e(rec.source or "—"))]
        if rec.informative:
            rows.append(("Informative", _e(INFO_TEXT)))
        if rec.message:
            rows.append(("Message", f"<pre>{_e(rec.message)}</pre>"))
        rows.append(("Evidence", f"<pre>{_e(rec.evidence)}</pre>" if rec.evidence else "none recorded"))
        rows.append(("Log", _log_link(rec.log)))
        if rec.properties:
            props = ", ".join(f"<code>{_e(k)}</code>={_e(v)}" for k, v in rec.properties.items())
            rows.append(("Properties", props))
        dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
        items.append(
            f'<details id="{anchors[id(rec)]}" class="{classes}"{is_open}><summary>'
            f'<span class="badge o-{rec.outcome}">{rec.outcome}</span><code>{_e(rec.id)}</code>'
            f'<span class="prof">{_e(rec.profile)}</span>{badges}'
            f'<span class="dur">{rec.duration_s:.2f} s</span></summary><dl>{dl}</dl></details>'
        )
    if not items:
        return ""
    return (
        '<section id="details"><h2>Details</h2><div class="controls"><button type="button" data-expand="1">'
        'expand all</button><button type="button" data-expand="0">collapse all</button></div>'
        + "".join(items)
        + "</section>"
    )


def _load(load: dict[str, Any]) -> str:
    rows: list[tuple[str, object]] = []
    charts: list[str] = []
    for key, value in load.items():
        if key == "series" and isinstance(value, dict):
            charts.extend(series_charts(value))
        elif key == "latency_histogram" and isinstance(value, list):
            charts.append(latency_histogram_chart(value))
        elif key == "memory" and isinstance(value, dict):
            charts.extend(memory_charts(value))
            rows.extend((f"memory.{k}", v) for k, v in value.items() if not isinstance(v, list))
        elif isinstance(value, dict) and value and all(_PERCENTILE_KEY.match(str(k)) for k in value):
            bars = [(str(k), _number(v)) for k, v in value.items()]
            unit = "ms" if key.endswith("_ms") else ""
            charts.append(f"<h3>{_e(key)}</h3>" + bar_chart(f"{key} percentiles", bars, unit))
        elif isinstance(value, dict):
            rows.extend((f"{key}.{k}", v) for k, v in value.items())
        else:
            rows.append((key, value))
    table = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_value(v))}</td></tr>" for k, v in rows)
    return (
        '<section id="load"><h2>Load</h2><div class="loadgrid">'
        f'<table class="kv"><tbody>{table}</tbody></table><div>{"".join(charts)}</div></div></section>'
    )


def _log_link(log: str) -> str:
    """A link for a report-relative log path; anything else (absolute path, URL, script) is shown as text."""
    if not log:
        return "none"
    if _SCHEME.match(log) or log.startswith(("/", "\\")):
        return f"<code>{_e(log)}</code>"
    return f'<a href="{_e(quote(log.replace(chr(92), "/"), safe="/._-~"))}"><code>{_e(log)}</code></a>'


def _anchors(tests: list[TestRecord]) -> dict[int, str]:
    """Stable, unique element ids per record (``t-<profile>--<test id>``) for links from the matrix."""
    anchors: dict[int, str] = {}
    used: set[str] = set()
    for rec in tests:
        base = "t-" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{rec.profile}--{rec.id}")
        anchor, n = base, 1
        while anchor in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor)
        anchors[id(rec)] = anchor
    return anchors


def _rank(rec: TestRecord) -> int:
    """Sort key: counted failures, counted errors, other failures, skips, passes."""
    if rec.outcome in BAD_OUTCOMES:
        return (0 if rec.outcome == "failed" else 1) if counts_toward_verdict(rec) else 2
    return 3 if rec.outcome == "skipped" else 4


def _profile_counts(run: Run, profile: str) -> str:
    counts = summarize(r for r in run.tests if r.profile == profile)
    return " · ".join(f"{n} {k}" for k, n in counts.items() if n) or "no results"


def _profile_index(run: Run, profile: str) -> int:
    return run.profiles.index(profile) if profile in run.profiles else len(run.profiles)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "—"
    return str(value)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min {secs} s"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
