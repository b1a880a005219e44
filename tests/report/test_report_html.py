"""index.html: escaping of hostile text, partial banner, order, badges, links, load chart, no external URL."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

from report_samples import EVIL, build_run, record

from harness.report import Run

ALLOWED_TAGS = (
    {"html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section", "script"}
    | {"h1", "h2", "h3", "div", "p", "dl", "dt", "dd", "strong", "span", "code", "small", "br", "wbr", "a"}
    | {"label", "input", "details", "summary", "pre", "button", "table", "thead", "tbody", "tr", "th", "td"}
    | {"svg", "text", "rect", "polyline", "line"}
)


class Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def render(run: Run, tmp_path: Path) -> str:
    run.write(tmp_path)
    return (tmp_path / "index.html").read_text(encoding="utf-8")


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def evil_run() -> Run:
    """Hostile text in every field a report shows."""
    run = Run.start({f"prof{EVIL}": {f"key{EVIL}": EVIL}}, run_id=f"run{EVIL}")
    run.add(
        record(
            f"board.x{EVIL}",
            f"prof{EVIL}",
            "failed",
            requirement=EVIL,
            source=EVIL,
            message=EVIL,
            evidence=EVIL,
            log=f"logs/{EVIL}.log",
            properties={EVIL: EVIL},
        )
    )
    run.finish(partial=True, reason=EVIL)
    return run


def test_hostile_text_is_escaped_everywhere(tmp_path: Path) -> None:
    html = render(evil_run(), tmp_path)
    tags = tags_of(html)
    assert {t for t, _ in tags} <= ALLOWED_TAGS
    assert [t for t, _ in tags].count("script") == 1  # only the report's own
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    assert "&lt;/pre&gt;&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in html
    assert "\x00" not in html and "\x1b" not in html


def test_sample_uses_only_known_tags_and_no_event_handlers(load_run: Run, tmp_path: Path) -> None:
    tags = tags_of(render(load_run, tmp_path))
    assert {t for t, _ in tags} <= ALLOWED_TAGS
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)


def test_self_contained_no_external_urls(load_run: Run, tmp_path: Path) -> None:
    html = render(load_run, tmp_path)
    assert "http:" not in html and "https:" not in html
    assert "//" not in re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    for tag, attrs in tags_of(html):
        for name in ("src", "href", "action"):
            value = attrs.get(name)
            if value is not None:
                assert not re.match(r"^[a-z][a-z0-9+.-]*:", value), f"<{tag} {name}={value}>"


def test_csp_pins_the_inline_style_and_script(sample_run: Run, tmp_path: Path) -> None:
    html = render(sample_run, tmp_path)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None and "default-src 'none'" in csp.group(1)
    for block in ("style", "script"):
        found = re.search(rf"<{block}>(.*?)</{block}>", html, re.S)
        assert found is not None
        digest = base64.b64encode(hashlib.sha256(found.group(1).encode()).digest()).decode()
        assert f"{block}-src 'sha256-{digest}'" in csp.group(1)


def test_partial_banner(sample_run: Run, tmp_path: Path) -> None:
    html = render(sample_run, tmp_path)
    assert "PARTIAL / interrupted" in html and "<title>PARTIAL" in html and "INCOMPLETE" in html
    sample_run.finish()
    html = render(sample_run, tmp_path)
    assert "PARTIAL" not in html
    assert '<span class="n">FAIL</span>' in html


def test_passing_run_says_pass(tmp_path: Path) -> None:
    run = Run.start(["rpi4"])
    run.add(record("board.arch", "rpi4", "passed"))
    run.add(record("board.kernel_config", "rpi4", "failed", informative=True))
    run.finish()
    assert '<span class="n">PASS</span>' in render(run, tmp_path)


def test_matrix_puts_problems_first_and_marks_informative(sample_run: Run, tmp_path: Path) -> None:
    html = render(sample_run, tmp_path)
    matrix = html[html.index('<table class="matrix">') : html.index("</table>", html.index('class="matrix"'))]
    rows = re.findall(r'<th class="test"[^>]*><code>([^<]+(?:<wbr>[^<]+)*)</code>', matrix)
    order = [r.replace("<wbr>", "") for r in rows]
    assert order[:4] == ["board.ota_commands", "scenario.mqtt_bridge", "board.kernel_config", "board.tpm"]
    row = matrix[matrix.index("board.<wbr>kernel_config") :].split("</tr>", 1)[0]
    assert 'class="badge b-info"' in row and 'class="o-failed inf"' in row
    assert "not a conformance verdict" in html  # the badge is explained
    assert "not run yet" in matrix  # board.tpm has no qemu-aarch64 result


def test_details_link_logs_and_open_failures(sample_run: Run, tmp_path: Path) -> None:
    sample_run.add(record("board.a", "rpi4", "passed", log="javascript:alert(1)"))
    sample_run.add(record("board.b", "rpi4", "passed", log="/var/log/abs path.log"))
    sample_run.add(record("board.c", "rpi4", "passed", log="logs/rpi4/with space#1.log"))
    html = render(sample_run, tmp_path)
    hrefs = [a.get("href") or "" for t, a in tags_of(html) if t == "a"]
    assert "logs/qemu-aarch64/board.ota_commands.log" in hrefs
    assert "logs/rpi4/with%20space%231.log" in hrefs
    assert not any("javascript" in h or h.startswith("/") for h in hrefs)
    assert "<code>javascript:alert(1)</code>" in html
    opened = re.findall(r'<details id="([^"]+)" class="[^"]*" open>', html)
    assert opened == ["t-qemu-aarch64--board.ota_commands", "t-rpi4--scenario.mqtt_bridge"]
    assert 'href="#t-qemu-aarch64--board.ota_commands"' in html


def test_load_section_has_svg_chart(load_run: Run, tmp_path: Path) -> None:
    html = render(load_run, tmp_path)
    load = html[html.index('<section id="load">') :]
    assert load.count("<svg") == 2  # latency_ms and connect_ms
    assert load.count("<rect") == 5  # connect_ms p99 is null: drawn as "no data", not as a zero bar
    assert "no data" in load and "throughput_msg_s" in load and "generator.rss_mb" in load
    assert 'id="load"' not in render(build_run(), tmp_path)


def test_huge_evidence_is_cut_in_html_only(tmp_path: Path) -> None:
    run = build_run()
    run.add(record("board.big", "rpi4", "failed", evidence="x" * 300_000 + "THE END"))
    html = render(run, tmp_path)
    assert "characters cut here" in html and "THE END" in html and len(html) < 200_000
    assert "x" * 300_000 in (tmp_path / "results.json").read_text(encoding="utf-8")


def test_empty_run_renders(tmp_path: Path) -> None:
    html = render(Run.start(["qemu-aarch64"]), tmp_path)
    assert "No test results yet" in html


def test_load_section_plots_series_and_latency_histogram(tmp_path: Path) -> None:
    run = build_run(load=True)
    assert run.load is not None
    run.load["series"] = {
        "t_s": [0.0, 1.0, 2.0, 3.0],
        "connected": [10.0, 200.0, 200.0, 150.0],
        "published_msg_s": [0.0, 400.0, 410.0, 0.0],
        "received_msg_s": [0.0, 395.0, 415.0, 2.0],
    }
    run.load["latency_histogram"] = [[0.5, 3], [1.0, 40], [2.0, 12], [4096.0, 1]]
    run.load["memory"] = {
        "interval_s": 1.0,
        "t_s": [0.0, 1.0, 2.0],
        "core_rss_mb": [5.0, None, 5.5],
        "generator_rss_mb": [90.0, 95.0, 96.0],
        "core_drift_mb_per_h": None,
    }
    html = render(run, tmp_path)
    load = html[html.index('<section id="load">') :]
    assert load.count("<svg") == 6  # + connections, throughput, latency histogram, memory
    assert "memory.core_drift_mb_per_h" in load and "memory.t_s" not in load
    for title in ("connections over time", "throughput over time", "delivery latency", "&lt;= 4.096 s"):
        assert title in load
    assert "series.t_s" not in load  # plotted, not dumped into the table
    assert {t for t, _ in tags_of(html)} <= ALLOWED_TAGS


def test_load_plots_ignore_malformed_series(tmp_path: Path) -> None:
    """A hand-edited results.json re-rendered: bad series draw nothing instead of failing the report."""
    run = build_run(load=True)
    assert run.load is not None
    run.load["series"] = {"t_s": [0.0, "x"], "connected": [1.0]}
    run.load["latency_histogram"] = [["a", 1], [1.0], "junk"]
    html = render(run, tmp_path)
    load = html[html.index('<section id="load">') :]
    assert "connections over time" not in load and load.count("<svg") == 3
