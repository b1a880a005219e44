"""Every discovery and relay scenario passes on the reference core and fails on its seeded defect.

Each case runs the real scenario (pytest, real broker in a real target) with one reference-core fault flag and
asserts the scenario fails with its clear message, and that the faithful core passes the same scenario.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu
REPO = Path(__file__).resolve().parents[2]
PROFILE = "native-x86_64"

#: fault flag -> (scenario file, -k expression, text the failure must contain)
DEFECTS = {
    "client_cert_optional": ("mqtt_relay", "test_m1", "a client without a certificate was accepted"),
    "client_id_unchecked": ("mqtt_relay", "test_m2", "connected with client id"),
    "acl_off": ("mqtt_relay", "test_m3", "a subscription outside the policy was granted"),
    "qos1_dropped": ("mqtt_relay", "test_m4 and 1", "QoS 1"),
    "oversize_accepted": ("mqtt_relay", "test_m5", "above the 131072-byte limit was delivered"),
    "rotation_without_restart": ("mqtt_relay", "test_m6", "rotation did not disconnect"),
    "server_cert_foreign_ca": ("discovery", "test_d1 or test_d2", "with the discovered CA failed"),
    "connectivity_stale": ("discovery", "test_d4", "after the move discovery returns"),
    "cloud:revoked_answered": ("discovery", "test_d3", "revoked certificate got an HTTP answer"),
    "cloud:any_thing_answered": ("discovery", "test_d3", "asking about another thing"),
}


def run_scenario(
    suite: str, keyword: str, report: Path, faults: list[str]
) -> tuple[int, dict[str, object], str]:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "scenarios" / suite),
        "-p",
        "no:cacheprovider",
        "-q",
        "-k",
        keyword,
        "--profile",
        PROFILE,
        "--report-dir",
        str(report),
    ]
    for f in faults:
        kind, _, name = f.rpartition(":")
        argv += ["--cloud-fault" if kind == "cloud" else "--core-fault", name]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO)
    data = json.loads((report / "results.json").read_text())
    return res.returncode, data, res.stdout + res.stderr


@pytest.mark.parametrize("suite", ["discovery", "mqtt_relay"])
def test_scenarios_pass_on_the_reference_core(suite: str, tmp_path: Path) -> None:
    rc, data, out = run_scenario(suite, "test_", tmp_path, [])
    assert rc == 0, out[-4000:]
    assert data["summary"]["failed"] == 0 and data["summary"]["passed"] >= 4  # type: ignore[index]


@pytest.mark.parametrize("fault", sorted(DEFECTS))
def test_seeded_defect_fails_its_scenario(fault: str, tmp_path: Path) -> None:
    suite, keyword, expected = DEFECTS[fault]
    rc, data, out = run_scenario(suite, keyword, tmp_path, [fault])
    assert rc == 1, f"the scenario did not fail with --core-fault {fault}:\n{out[-3000:]}"
    failed = [t for t in data["tests"] if t["outcome"] == "failed"]  # type: ignore[attr-defined]
    assert failed, out[-3000:]
    messages = " | ".join(str(t["message"]) for t in failed)
    assert expected in messages, f"failure message does not say what broke: {messages}"


def test_unknown_fault_is_a_usage_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "scenarios" / "mqtt_relay"),
            "-p",
            "no:cacheprovider",
            "--profile",
            PROFILE,
            "--core-fault",
            "made_up",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert res.returncode == 4  # pytest usage error
    assert "unknown reference-core fault(s) made_up; allowed:" in res.stdout + res.stderr
