"""index.html in a real browser: headless Chromium renders it without console errors, wide and phone-sized.

Screenshots go to reports/artifacts/ for people (and CI artefact upload) to look at. Chromium prints every
page console message to stderr as a ``CONSOLE`` line under ``--enable-logging=stderr``; the report itself logs
nothing, so any such line is an error. A negative control proves the detector works on this Chromium build.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from report_samples import STARTED, build_run

from harness.paths import REPORTS_DIR

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPORTS_DIR / "artifacts"
CONSOLE_LINE = re.compile(r":CONSOLE[:(].*")
TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian package 'chromium'; CI setup installs it)"
)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium offline; on timeout kill its whole process group (renderers included)."""
    argv = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr",
        "--v=0", *args,
    ]  # fmt: skip
    pipe = subprocess.PIPE
    proc = subprocess.Popen(argv, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {argv}\n{stderr[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def console_messages(stderr: str) -> list[str]:
    return [m.group() for m in CONSOLE_LINE.finditer(stderr)]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample load run written once, kept as an artefact next to its screenshots."""
    out = tmp_path_factory.mktemp("report")
    run = build_run(load=True)
    run.finish(partial=True, reason="interrupted (SIGINT) after 13 tests", now=STARTED + timedelta(minutes=7))
    run.write(out)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copytree(out, ARTIFACTS / "sample-report", dirs_exist_ok=True)
    (ARTIFACTS / "sample-report").chmod(0o755)
    return out


def test_console_detector_sees_page_errors(tmp_path: Path) -> None:
    """Negative control: an uncaught exception shows up as a CONSOLE line."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><title>x</title><script>undefinedFunction();</script>", encoding="utf-8")
    messages = console_messages(chromium(tmp_path, "--dump-dom", page.as_uri()).stderr)
    assert any("Uncaught ReferenceError" in m for m in messages), messages


def test_csp_blocks_external_loads_and_foreign_scripts(tmp_path: Path, report_dir: Path) -> None:
    """The report's policy refuses an external image and any script other than its own, and says so."""
    html = (report_dir / "index.html").read_text(encoding="utf-8")
    tampered = html.replace("<main>", '<main><img src="https://example.invalid/x.png" alt="">', 1)
    tampered = tampered.replace('"use strict";', '"use strict"; undefinedFunction();', 1)
    page = tmp_path / "tampered.html"
    page.write_text(tampered, encoding="utf-8")
    result = chromium(tmp_path, "--dump-dom", page.as_uri())
    messages = console_messages(result.stderr)
    assert any("example.invalid" in m and "Content Security Policy" in m for m in messages), messages
    assert any("inline script" in m and "Content Security Policy" in m for m in messages), messages
    assert 'data-report-ready="1"' not in result.stdout


@pytest.mark.parametrize(("name", "size"), [("wide", "1280,900"), ("phone", "375,1500")])
def test_screenshot_without_console_errors(tmp_path: Path, report_dir: Path, name: str, size: str) -> None:
    shot = ARTIFACTS / f"report-{name}.png"
    shot.unlink(missing_ok=True)
    page = (report_dir / "index.html").as_uri()
    result = chromium(tmp_path, f"--screenshot={shot}", f"--window-size={size}", page)
    assert result.returncode == 0, result.stderr[-3000:]
    assert console_messages(result.stderr) == []
    width, height = png_size(shot)
    assert (width, height) == tuple(int(v) for v in size.split(","))


def test_script_runs_to_the_end_and_opens_the_linked_test(tmp_path: Path, report_dir: Path) -> None:
    """The page script marks the document when it finished without throwing; a matrix link opens its test."""
    url = (report_dir / "index.html").as_uri() + "#t-rpi4--board.arch"
    result = chromium(tmp_path, "--dump-dom", url)
    assert console_messages(result.stderr) == []
    assert re.search(r'<html[^>]*data-report-ready="1"', result.stdout), result.stdout[:500]
    assert re.search(r'<details id="t-rpi4--board.arch" class="[^"]*" open', result.stdout)
    assert not re.search(r'<details id="t-qemu-aarch64--board.arch" class="[^"]*" open', result.stdout)
