"""`harness qualify` end to end: exit statuses, the report it leaves, and partial reports on interruption."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "profiles"


def qualify(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "qualify", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def results(report: Path) -> dict[str, object]:
    data = json.loads((report / "results.json").read_text())
    assert isinstance(data, dict)
    return data


def test_unknown_suite_is_a_usage_error(tmp_path: Path) -> None:
    res = qualify("--suite", "nonsense", "--report-dir", str(tmp_path))
    assert res.returncode == 2
    assert "unknown suite(s) nonsense; allowed: board, discovery, mqtt_relay" in res.stderr
    assert "Traceback" not in res.stderr


def test_malformed_profile_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\narch: armv9\ntransport: qemu-user\n")
    res = qualify("--profile", str(bad), "--report-dir", str(tmp_path / "r"))
    assert res.returncode == 2
    assert f"{bad}" in res.stderr and "field 'arch'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.qemu
def test_board_suite_passes_on_native_and_writes_all_three_files(tmp_path: Path) -> None:
    res = qualify("--profile", "native-x86_64", "--suite", "board", "--report-dir", str(tmp_path))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = results(tmp_path)
    assert data["partial"] is False and data["profiles"] == ["native-x86_64"]
    ids = {t["id"] for t in data["tests"]}  # type: ignore[attr-defined]
    assert {"board.arch", "board.ota_commands", "board.docker"} <= ids
    assert (tmp_path / "junit.xml").exists() and (tmp_path / "index.html").exists()
    for t in data["tests"]:  # type: ignore[attr-defined]
        assert (tmp_path / t["log"]).exists()


@pytest.mark.qemu
def test_failed_requirement_exits_1(tmp_path: Path) -> None:
    res = qualify(
        "--profile", str(FIXTURES / "tiny-x86_64.yaml"), "--suite", "board", "--report-dir", str(tmp_path)
    )
    assert res.returncode == 1, res.stdout[-3000:]
    failed = {t["id"] for t in results(tmp_path)["tests"] if t["outcome"] == "failed"}  # type: ignore[attr-defined]
    assert failed == {"board.disk"}  # 128 MB disk, V2 needs 256 MB


@pytest.mark.qemu
def test_armhf_userland_on_armv6_fails_the_arch_row(tmp_path: Path) -> None:
    res = qualify(
        "--profile",
        str(FIXTURES / "qemu-armv6l-armhf.yaml"),
        "--suite",
        "board",
        "--report-dir",
        str(tmp_path),
    )
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    rows = {t["id"]: t for t in results(tmp_path)["tests"]}  # type: ignore[attr-defined]
    assert rows["board.arch"]["outcome"] == "failed"
    assert "Illegal instruction" in rows["board.arch"]["message"]
    assert all(r["outcome"] in ("error", "skipped") for i, r in rows.items() if i != "board.arch")


def test_unreachable_board_exits_3_with_a_report(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prof = tmp_path / "gone-board.yaml"
    prof.write_text(
        textwrap.dedent(f"""\
        name: gone-board
        arch: aarch64
        transport: ssh
        ssh: {{host: 127.0.0.1, port: {port}, connect_timeout_s: 1}}
        power: {{driver: none, boot_timeout_s: 2}}
        """)
    )
    res = qualify("--profile", str(prof), "--suite", "board", "--report-dir", str(tmp_path / "r"))
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    rows = results(tmp_path / "r")["tests"]
    assert isinstance(rows, list) and rows
    # every row that applies to an SSH board errors; the VM-only power-cut row is skipped, not run
    assert all(r["outcome"] == "error" for r in rows if r["id"] != "board.power_cut_disk"), rows
    assert "no SSH answer" in rows[0]["message"]


def test_interrupted_session_leaves_a_partial_report(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a suite: the report written so far says partial and still renders."""
    suite = tmp_path / "test_slow.py"
    suite.write_text(
        textwrap.dedent("""\
        import time
        def test_first():
            pass
        def test_second():
            print("waiting", flush=True)
            time.sleep(60)
        def test_third():
            pass
        """)
    )
    report = tmp_path / "report"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            str(suite),
            "-p",
            "no:cacheprovider",
            "-s",
            "--report-dir",
            str(report),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if "waiting" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 2  # pytest: interrupted
    data = results(report)
    assert data["partial"] is True and data["partial_reason"] == "interrupted"
    assert [t["id"] for t in data["tests"]] == ["slow.first"]  # type: ignore[attr-defined]
    assert "PARTIAL" in (report / "index.html").read_text()


@pytest.mark.qemu
def test_every_suite_passes_on_all_four_profiles_in_one_run(tmp_path: Path) -> None:
    """The main job's promise: board, discovery and relay suites on all four emulated boards, one report."""
    profiles = ["native-x86_64", "qemu-armv6l", "qemu-armv7l", "qemu-aarch64"]
    args = [a for p in profiles for a in ("--profile", p)]
    suites = ["--suite", "board", "--suite", "discovery", "--suite", "mqtt_relay"]
    res = qualify(*args, *suites, "--workers", "2", "--report-dir", str(tmp_path), timeout=2400)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    data = results(tmp_path)
    assert sorted(data["profiles"]) == sorted(profiles)  # type: ignore[arg-type]
    tests = data["tests"]
    for suite, count in (("discovery", 4), ("mqtt_relay", 7)):
        for p in profiles:
            rows = [t for t in tests if t["suite"] == suite and t["profile"] == p]  # type: ignore[attr-defined]
            assert len(rows) == count and all(t["outcome"] == "passed" for t in rows), (suite, p, rows)
    failed = [t for t in tests if t["outcome"] in ("failed", "error") and not t["informative"]]  # type: ignore[attr-defined]
    assert failed == []
