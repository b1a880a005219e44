"""The provisioning benchmark with small counts, so it cannot rot (full run: bench/bench_provision.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_provision.py"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is the benchmark's peer")
def test_bench_provision_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_provision", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "results.json"
    status = bench.main(
        [
            "--count",
            "200",
            "--rsa-count",
            "8",
            "--openssl-count",
            "4",
            "--workers",
            "2",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ]
    )
    assert status == 0, capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["ec"]["summary"] == {
        "total": 200,
        "success": 200,
        "failure": 0,
        "waiting": 0,
        "inProgress": 0,
    }
    assert results["rsa"]["summary"]["success"] == 8 and results["ec"]["consistent"]
    assert results["ratios"]["rsa_vs_ec_per_device"] > 0
    assert "ratios" in capsys.readouterr().out
