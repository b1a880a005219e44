"""Sample runs for the report writer tests: every outcome, informative and optional rows, hostile evidence.

A plain module (not conftest) so tests can import the builders; the fixtures are in conftest.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from harness.records import Outcome, TestRecord
from harness.report import Run

EVIL = '</pre><script>alert("pwned")</script><img src=x onerror=alert(1)> & "quotes" \x1b[31mred\x1b[0m\x00'
STARTED = datetime(2026, 1, 5, 4, 45, 1, tzinfo=UTC)


def record(test_id: str, profile: str, outcome: Outcome, **kwargs: Any) -> TestRecord:
    """A TestRecord with plausible defaults; the suite is the id's first component."""
    defaults: dict[str, Any] = {
        "duration_s": 0.25,
        "requirement": f"{test_id} behaves as documented",
        "source": "seed 002 (Greengrass nucleus requirements)",
        "evidence": f"$ check {test_id}\nok",
        "log": f"logs/{profile}/{test_id}.log",
    }
    defaults.update(kwargs)
    return TestRecord(id=test_id, suite=test_id.split(".")[0], profile=profile, outcome=outcome, **defaults)


LOAD: dict[str, Any] = {
    "devices": 200,
    "connected": 198,
    "failed": 2,
    "published": 12000,
    "received": 11990,
    "lost": 10,
    "duplicates": 0,
    "throughput_msg_s": 398.7,
    "latency_ms": {"p50": 12.5, "p95": 48.0, "p99": 130.2},
    "connect_ms": {"p50": 35.0, "p95": 80.1, "p99": None},
    "generator": {"cpu_s": 14.2, "rss_mb": 88.5},
}


def build_run(*, load: bool = False) -> Run:
    """Two profiles, two suites, every outcome, one hostile evidence string."""
    run = Run.start(
        {
            "qemu-aarch64": {"rootfs_key": "debian-12-arm64-5f2c", "kernel_authoritative": False},
            "rpi4": {"rootfs_key": "raspios-12-arm64-91aa", "kernel_authoritative": True},
        },
        run_id="20260105-044501-ab12",
        now=STARTED,
    )
    for profile in ("qemu-aarch64", "rpi4"):
        run.add(record("board.arch", profile, "passed"))
        run.add(record("board.cgroups_v2", profile, "passed"))
        run.add(record("scenario.deploy_component", profile, "passed", duration_s=12.5))
    run.add(record("board.ota_commands", "qemu-aarch64", "failed", message="reboot missing", evidence=EVIL))
    run.add(record("board.ota_commands", "rpi4", "passed"))
    run.add(
        record(
            "board.kernel_config",
            "qemu-aarch64",
            "failed",
            informative=True,
            message="CONFIG_OVERLAY_FS not set (host kernel)",
        )
    )
    run.add(record("board.kernel_config", "rpi4", "passed"))
    run.add(record("scenario.mqtt_bridge", "rpi4", "error", message="target unreachable: ssh timeout"))
    run.add(record("scenario.mqtt_bridge", "qemu-aarch64", "skipped", message="needs network namespace"))
    run.add(record("board.tpm", "rpi4", "failed", required=False, message="no TPM"))
    if load:
        run.load = dict(LOAD)
    return run
