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
SCENARIOS = 12

#: fault -> (-k expression selecting its scenario, report id of that scenario, text its failure must contain)
DEFECTS = {
    "wrong_prefix": (
        "test_dk1",
        "docker.dk1_deploy_reports_success_and_runs_containers",
        "containers not prefixed 'greengrassdockerapplicationdeployment'",
    ),
    "failure_without_error": (
        "test_dk2 and user",
        "docker.dk2_invalid_parameter_fails[user-not-a-uid]",
        "fields missing from the fail payload: error",
    ),
    "invalid_parameter_ignored": (
        "test_dk2 and force",
        "docker.dk2_invalid_parameter_fails[force-deploy-not-boolean]",
        "expected status fail with error InvalidParameter",
    ),
    "old_containers_kept": (
        "test_dk3 and True",
        "docker.dk3_new_deployment_replaces_containers[True]",
        "containers of the previous deployment still present",
    ),
    "offline_ignores_stored": (
        "test_dk4_offline_uses",
        "docker.dk4_offline_uses_stored_compose_file",
        "there is no stored compose file",
    ),
    "offline_missing_ok": (
        "test_dk4 and no-stored",
        "docker.dk4_offline_without_compose_file_or_images_fails[no-stored-file]",
        "offline with nothing to run must fail with InternalError",
    ),
    "pull_skipped": (
        "test_dk6 and True",
        "docker.dk6_pull_before_up_updates_images[True]",
        "expected the container to run build 2",
    ),
    "no_down_on_stop": (
        "test_dk5",
        "docker.dk5_containers_gone_after_core_stops",
        "containers left after the core stopped",
    ),
}
#: Faults that touch disjoint behaviours run together (one session each group) to keep CI time low; each
#: still has to fail exactly its own scenario with its own message.
GROUPS = {
    "failure-payload-and-lifecycle": (
        "failure_without_error",
        "old_containers_kept",
        "offline_missing_ok",
        "no_down_on_stop",
        "pull_skipped",
    ),
    "naming-parameters-offline": ("wrong_prefix", "invalid_parameter_ignored", "offline_ignores_stored"),
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


def test_every_fault_has_a_defect_case_in_one_group() -> None:
    assert set(DEFECTS) == set(FAULTS)
    grouped = [f for g in GROUPS.values() for f in g]
    assert sorted(grouped) == sorted(FAULTS)


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


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_seeded_defects_fail_their_scenarios(group: str, tmp_path: Path) -> None:
    faults = GROUPS[group]
    keyword = " or ".join(f"({DEFECTS[f][0]})" for f in faults)
    rc, data, out = run_suite("native-x86_64", tmp_path, keyword, faults)
    assert rc == 1, f"the scenarios did not fail with --docker-fault {', '.join(faults)}:\n{out[-3000:]}"
    outcome = {t["id"]: t for t in data["tests"]}
    for fault in faults:
        _, test_id, expected = DEFECTS[fault]
        row = outcome.get(test_id)
        assert row is not None, f"{test_id} did not run: {sorted(outcome)}"
        assert row["outcome"] == "failed", f"--docker-fault {fault}: {test_id} {row['outcome']}, not failed"
        assert expected in str(row["message"]), (
            f"--docker-fault {fault}: {test_id} failed without saying what broke: {row['message']}"
        )
    assert len([t for t in data["tests"] if t["outcome"] == "failed"]) == len(faults), out[-3000:]
