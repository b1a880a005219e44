"""Load scenarios L1-L3 at small scale: a fleet of client devices against the core under test.

Each device has its own certificate from the cloud side, discovers the core through the discovery endpoint
and connects with mutual TLS; a slice runs the real AWS IoT Device SDK. Counts come from sequence numbers
in every payload (``harness.fleet``). Scale with ``harness load`` for real numbers; these check behaviour.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.fleet.backoff import BackoffPolicy
from harness.fleet.checks import describe, loss_problem
from harness.fleet.engine import FleetEngine
from harness.fleet.ledger import Ledger, LedgerSummary
from harness.fleet.plan import DiscoveryEndpoint, FleetConfig, make_plan
from harness.fleet.stand import provision_load_devices
from harness.pytest_core import CoreUnderTest, core_log_tail

DEVICES = 24
SDK_DEVICES = 2


def run_fleet(cut: CoreUnderTest, discovery: Any, cfg: FleetConfig) -> LedgerSummary:
    """Run ``cfg`` against the core under test with the session's discovery endpoint; returns the ledger."""
    from harness.cloud.api import Cloud

    assert isinstance(cut.cloud, Cloud)
    identities = provision_load_devices(cut.cloud, cut.fleet.core, cfg.devices)
    endpoint = DiscoveryEndpoint(discovery.host, discovery.port, str(cut.cloud.root_ca_path))
    plan = make_plan(cfg, identities, discovery=endpoint)
    storm = None
    if cfg.storm == "rotate":
        storm = cut.core.rotate_certificate
    elif cfg.storm == "restart":

        def storm() -> None:
            cut.core.stop()
            cut.core.start()

    ledger = Ledger(d.thing for d in plan.devices)
    FleetEngine(plan, [ledger], storm=storm).run_sync()
    return ledger.summary()


def _all_connected(s: LedgerSummary, cut: CoreUnderTest) -> None:
    never = [r.device for r in s.rows if not r.connects]
    assert not never, (
        f"{len(never)} of {s.devices} devices never connected (first: {', '.join(never[:3])})\n"
        f"{describe(s)}\n{core_log_tail(cut.core)}"
    )


@pytest.mark.requirement(
    "L1 connection ramp: every device discovers the core and connects with mutual TLS at the target rate; "
    "connect latency percentiles are reported",
    source="scenarios.md load L1; issue #6",
)
def test_l1_connection_ramp(core_under_test: CoreUnderTest, discovery: Any) -> None:
    cfg = FleetConfig(
        devices=DEVICES,
        connect_rate=20,
        rate=0,
        duration_s=1,
        subscribers=0,
        sdk_devices=SDK_DEVICES,
        drain_s=0,
    )
    s = run_fleet(core_under_test, discovery, cfg)
    _all_connected(s, core_under_test)
    assert s.discover_failed == 0, f"{s.discover_failed} discoveries failed\n{describe(s)}"
    assert s.connect_ms["p99"] is not None and s.connect_ms["p99"] > 0, describe(s)
    assert {r.engine for r in s.rows} == {"asyncio", "sdk"}


@pytest.mark.requirement(
    "L2 steady telemetry: devices publish at a rate, some subscribe; nothing lost or duplicated while the "
    "core stays up (counted per device from sequence numbers), latency percentiles reported",
    source="scenarios.md load L2; issue #6",
)
@pytest.mark.parametrize("qos", [0, 1])
def test_l2_steady_telemetry(core_under_test: CoreUnderTest, discovery: Any, qos: int) -> None:
    cfg = FleetConfig(
        devices=DEVICES,
        connect_rate=20,
        rate=2,
        qos=qos,
        duration_s=4,
        subscribers=2,
        sdk_devices=SDK_DEVICES,
        drain_s=3,
    )
    s = run_fleet(core_under_test, discovery, cfg)
    _all_connected(s, core_under_test)
    assert s.published >= DEVICES * 2 * 4 * 0.9, f"the fleet could not publish at its rate\n{describe(s)}"
    problem = loss_problem(s, qos)
    assert problem is None, f"{problem}\n{describe(s)}\n{core_log_tail(core_under_test.core)}"
    assert s.duplicates == 0, f"{s.duplicates} duplicate deliveries while the core stayed up\n{describe(s)}"
    assert s.latency_ms["p99"] is not None, describe(s)


@pytest.mark.requirement(
    "L3 reconnect storm: after a core restart or a certificate rotation every device comes back under its "
    "backoff policy; time until 50/95/99 % reconnected and peak connect rate reported",
    source="scenarios.md load L3; core-behaviour.md (rotation restarts the broker); issue #6",
)
@pytest.mark.destructive
@pytest.mark.parametrize("storm", ["restart", "rotate"])
def test_l3_reconnect_storm(core_under_test: CoreUnderTest, discovery: Any, storm: str) -> None:
    cfg = FleetConfig(
        devices=DEVICES,
        connect_rate=20,
        rate=1,
        qos=0,
        duration_s=4,
        subscribers=1,
        sdk_devices=SDK_DEVICES,
        storm=storm,
        storm_at_s=1.0,  # type: ignore[arg-type]
        backoff=BackoffPolicy("full-jitter", 0.5, 5.0),
        reconnect_timeout_s=60,
        drain_s=2,
    )
    s = run_fleet(core_under_test, discovery, cfg)
    st = s.storm
    assert st is not None, describe(s)
    assert st.devices == DEVICES, (
        f"only {st.devices} devices were connected when the storm began\n{describe(s)}"
    )
    assert s.disconnects >= DEVICES, (
        f"the core's {storm} disconnected only {s.disconnects} of {DEVICES} devices "
        "(it must drop every client)\n"
        f"{describe(s)}"
    )
    assert st.reconnected == st.devices, (
        f"{st.devices - st.reconnected} devices did not reconnect within {cfg.reconnect_timeout_s:g} s\n"
        f"{describe(s)}\n{core_log_tail(core_under_test.core)}"
    )
    assert st.t50_s is not None and st.t99_s is not None and st.peak_connect_rate_s > 0, describe(s)
