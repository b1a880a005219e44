"""The docker suite passes on the faithful connector (native and emulated) and fails on each seeded defect.

Each case runs the real scenarios (pytest, the reference core's broker in a real target, the private podman
engine, images of the profile's architecture) in a subprocess and reads its results.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.docker.faults import FAULTS

pytestmark = pytest.mark.qemu
REPO = Path(__file__).resolve().parents[2]
SCENARIOS = 10

#: fault -> (-k expression selecting its scenario, text the failure message must contain)
DEFECTS = {
    "wrong_prefix": ("test_dk1", "containers not prefixed 'greengrassdockerapplicationdeployment'"),
    "failure_without_error": ("test_dk2 and user", "fields missing from the fail payload: error"),
    "invalid_parameter_ignored": ("test_dk2 and force", "expected status fail with error InvalidParameter"),
    "old_containers_kept": ("test_dk3 and True", "containers of the previous deployment still present"),
    "offline_ignores_stored": ("test_dk4_offline_uses", "there is no stored compose file"),
    "offline_missing_ok": (
        "test_dk4 and no-stored",
        "offline with nothing to run must fail with InternalError",
    ),
    "no_down_on_stop": ("test_dk5", "containers left after the core stopped"),
}


def run_suite(
    profile: str, report: Path, keyword: str = "", faults: tuple[str, ...] = ()
) -> tuple[int, dict[str, Any], str]:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "scenarios" / "docker"),
        "-p",
        "no:cacheprovider",
        "-q",
        "--profile",
        profile,
        "--report-dir",
        str(report),
    ]
    if keyword:
        argv += ["-k", keyword]
    for fault in faults:
        argv += ["--docker-fault", fault]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO, check=False)
    results = report / "results.json"
    assert results.exists(), res.stdout[-3000:] + res.stderr[-3000:]
    return res.returncode, json.loads(results.read_text()), res.stdout + res.stderr


def test_every_fault_has_a_defect_case() -> None:
    assert set(DEFECTS) == set(FAULTS)


@pytest.mark.parametrize("profile", ["native-x86_64", "qemu-aarch64"])
def test_docker_suite_passes_on_the_reference_connector(profile: str, tmp_path: Path) -> None:
    rc, data, out = run_suite(profile, tmp_path)
    assert rc == 0, out[-4000:]
    assert data["summary"]["passed"] == SCENARIOS and data["summary"]["failed"] == 0, data["summary"]
    ids = {t["id"] for t in data["tests"]}
    assert {
        "docker.dk1_deploy_reports_success_and_runs_containers",
        "docker.dk5_containers_gone_after_core_stops",
    } <= ids, ids


@pytest.mark.parametrize("fault", sorted(DEFECTS))
def test_seeded_defect_fails_its_scenario(fault: str, tmp_path: Path) -> None:
    keyword, expected = DEFECTS[fault]
    rc, data, out = run_suite("native-x86_64", tmp_path, keyword, (fault,))
    assert rc == 1, f"the scenario did not fail with --docker-fault {fault}:\n{out[-3000:]}"
    failed = [t for t in data["tests"] if t["outcome"] == "failed"]
    assert failed, out[-3000:]
    messages = " | ".join(str(t["message"]) for t in failed)
    assert expected in messages, f"the failure does not say what broke: {messages[:2000]}"
