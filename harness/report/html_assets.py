"""The inline CSS and JavaScript of index.html.

Inline so the report is one file that works from a CI artefact, a mail attachment or an air-gapped lab; the
page's Content-Security-Policy allows exactly these two blocks (by hash) and nothing from the network.
"""

from __future__ import annotations

CSS = """
:root{--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;--link:#0969da;
--pass:#1a7f37;--pass-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--err:#8250df;--err-bg:#fbefff;
--skip:#59636e;--skip-bg:#eaeef2;--warn:#9a6700;--warn-bg:#fff8c5;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;
--card:#151b23;--link:#4493f8;--pass:#3fb950;--pass-bg:#12261e;--fail:#f85149;--fail-bg:#2d1214;
--err:#ab7df8;--err-bg:#231a33;--skip:#9198a1;--skip-bg:#212830;--warn:#d29922;--warn-bg:#272115}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif}
main{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:0 0 8px}h2{font-size:1.2rem;margin:28px 0 10px;border-bottom:1px solid var(--line);
padding-bottom:4px}
a{color:var(--link)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
.meta dt{color:var(--muted)}.meta dd{margin:0;overflow-wrap:anywhere}
.banner{border:2px solid var(--warn);background:var(--warn-bg);color:var(--fg);border-radius:6px;
padding:10px 14px;margin:12px 0;font-size:1.05rem}
.banner strong{color:var(--warn);letter-spacing:.04em}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:12px 0}
.card{flex:1 1 110px;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px 12px}
.card .n{display:block;font-size:1.6rem;font-weight:600}.card .k{color:var(--muted);font-size:.85rem}
.card.v-pass .n{color:var(--pass)}.card.v-fail .n{color:var(--fail)}.card.v-partial .n{color:var(--warn)}
.card.failed .n{color:var(--fail)}.card.error .n{color:var(--err)}.card.passed .n{color:var(--pass)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--card);white-space:nowrap;font-weight:600}
.matrix th.test{position:sticky;left:0;background:var(--bg);z-index:1;min-width:12em;max-width:22em;
overflow-wrap:anywhere;font-weight:normal}
.matrix thead th.test{background:var(--card)}
.matrix td{white-space:nowrap;text-align:center;min-width:7.5em}
.matrix td a{display:block;color:inherit;text-decoration:none;font-weight:600}
.o-passed{background:var(--pass-bg);color:var(--pass)}.o-failed{background:var(--fail-bg);color:var(--fail)}
.o-error{background:var(--err-bg);color:var(--err)}.o-skipped{background:var(--skip-bg);color:var(--skip)}
.o-none{color:var(--muted)}.props td{white-space:nowrap}
td.inf{background-image:repeating-linear-gradient(135deg,transparent 0 6px,rgba(128,128,128,.13) 6px 8px)}
.badge{display:inline-block;border-radius:999px;padding:0 7px;font-size:.78rem;font-weight:600;
border:1px solid currentColor;line-height:1.5;vertical-align:middle}
.b-info{color:var(--link);border-radius:50%;padding:0;width:1.5em;text-align:center;font-style:italic;
font-family:Georgia,serif}
.b-opt{color:var(--muted)}
.legend{color:var(--muted);font-size:.9rem;margin:8px 0}
.legend p{margin:4px 0}
.controls{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;margin:8px 0}
button{font:inherit;padding:3px 10px;border:1px solid var(--line);border-radius:6px;background:var(--card);
color:var(--fg);cursor:pointer}
details.rec{border:1px solid var(--line);border-left-width:5px;border-radius:6px;margin:6px 0;
background:var(--bg)}
details.rec.o-passed{border-left-color:var(--pass)}details.rec.o-failed{border-left-color:var(--fail)}
details.rec.o-error{border-left-color:var(--err)}details.rec.o-skipped{border-left-color:var(--skip)}
details.rec>summary{cursor:pointer;padding:6px 10px;color:var(--fg);display:flex;flex-wrap:wrap;gap:4px 10px;
align-items:center}
details.rec>summary code{font-weight:600;overflow-wrap:anywhere}
details.rec .prof,details.rec .dur{color:var(--muted);font-size:.88rem}
details.rec:target{outline:2px solid var(--link)}
details.rec dl{margin:0;padding:4px 12px 12px;display:grid;grid-template-columns:max-content minmax(0,1fr);
gap:6px 12px;color:var(--fg);background:var(--bg)}
details.rec dt{color:var(--muted);font-weight:600}details.rec dd{margin:0;overflow-wrap:anywhere}
pre{margin:0;padding:8px;background:var(--card);border:1px solid var(--line);border-radius:4px;
white-space:pre-wrap;overflow-wrap:anywhere;max-height:32em;overflow:auto}
.chart{width:100%;max-width:640px;height:auto;display:block;margin:8px 0}
.chart .lbl,.chart .val{font:13px system-ui,sans-serif;fill:var(--fg)}
.chart .b0{fill:#2da44e}.chart .b1{fill:#d4a72c}.chart .b2{fill:#cf222e}
.loadgrid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:8px 24px;
align-items:start}
.kv td:first-child{color:var(--muted)}.kv td{font-variant-numeric:tabular-nums}
body.only-problems .ok{display:none}
footer{color:var(--muted);font-size:.85rem;margin:32px 0 8px}
@media (max-width:600px){main{padding:10px}h1{font-size:1.25rem}
.card{flex-basis:28%;padding:6px 8px}.card .n{font-size:1.25rem}
.card.v-pass,.card.v-fail,.card.v-partial{flex-basis:100%}
.matrix th.test{min-width:9em}.matrix td{min-width:6.5em}
details.rec dl{grid-template-columns:1fr}details.rec dt{margin-top:6px}}
"""

JS = """
(function () {
  "use strict";
  function openTarget() {
    var id = "";
    try { id = decodeURIComponent(window.location.hash.slice(1)); } catch (e) { return; }
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
  var only = document.getElementById("only-problems");
  if (only) {
    only.addEventListener("change", function () {
      document.body.classList.toggle("only-problems", only.checked);
    });
  }
  var buttons = document.querySelectorAll("button[data-expand]");
  Array.prototype.forEach.call(buttons, function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("data-expand") === "1";
      Array.prototype.forEach.call(document.querySelectorAll("details.rec"), function (d) { d.open = open; });
    });
  });
  document.documentElement.setAttribute("data-report-ready", "1");
})();
"""
