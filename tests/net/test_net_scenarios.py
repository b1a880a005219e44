"""The network scenarios pass on the reference core (native and emulated) and fail on each seeded defect.

Each run is the real suite in a pytest subprocess (real namespaces, broker, TLS), with its report read back.
One defect run carries all four defects at once: each touches only its own scenario, which must fail with
its own message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu
REPO = Path(__file__).resolve().parents[2]

#: scenario id -> text its failure must contain, with the defects below
DEFECTS = {
    "n1_reconnect_backoff_jitter": "no jitter: at retry step",
    "n2_qos1_through_partition": "QoS 1 messages to the persistent session were lost through the partition",
    "n3_local_while_cloud_cut": "the core stopped serving local devices while its cloud link was cut",
    "n4_discovery_retries": "a tight loop against the discovery endpoint",
}
DEFECT_ARGS = [
    "--net-client-backoff",
    "exponential:0.25:2",  # a client policy without jitter (N1)
    "--net-fault",
    "offline_queue_off",  # N2
    "--net-fault",
    "local_stalls_without_cloud",  # N3
    "--net-client-fault",
    "discovery_without_backoff",  # N4
]


def run_suite(report: Path, profiles: list[str], extra: list[str]) -> tuple[int, dict[str, object], str]:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "scenarios" / "network"),
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    for p in profiles:
        argv += ["--profile", p]
    argv += ["--report-dir", str(report), *extra]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO)
    return res.returncode, json.loads((report / "results.json").read_text()), res.stdout + res.stderr


@pytest.mark.parametrize("profile", ["native-x86_64", "qemu-aarch64"])
def test_network_scenarios_pass(tmp_path: Path, profile: str) -> None:
    code, data, out = run_suite(tmp_path, [profile], [])
    rows = {(t["id"], t["profile"]): t for t in data["tests"]}  # type: ignore[attr-defined]
    for sid in DEFECTS:
        row = rows.get((f"network.{sid}", profile))
        assert row is not None, f"no row for {sid} on {profile}: {sorted(rows)}\n{out[-3000:]}"
        assert row["outcome"] == "passed", f"{sid} on {profile}: {row['message']}\n{out[-3000:]}"
        assert "net_events" in row["properties"], row
    assert code == 0, out[-3000:]


def test_each_seeded_defect_fails_its_scenario(tmp_path: Path) -> None:
    code, data, out = run_suite(tmp_path, ["native-x86_64"], DEFECT_ARGS)
    assert code == 1, out[-3000:]
    rows = {str(t["id"]).removeprefix("network."): t for t in data["tests"]}  # type: ignore[attr-defined]
    for sid, text in DEFECTS.items():
        assert rows[sid]["outcome"] == "failed", f"{sid} did not fail on its defect:\n{rows[sid]}"
        assert text in rows[sid]["message"], f"{sid}: {rows[sid]['message']}"
