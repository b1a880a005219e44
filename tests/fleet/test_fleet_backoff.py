"""Backoff policies: deterministic with a seeded RNG, inside their bounds, and obeyed by the engine."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cloud.api import Cloud
from harness.errors import InputError
from harness.fleet.backoff import POLICIES, BackoffPolicy
from harness.fleet.engine import FleetEngine
from harness.fleet.ledger import Ledger
from harness.fleet.plan import BrokerEndpoint, FleetConfig, Identity, make_plan
from harness.fleet.stand import provision_load_devices
from harness.records import Measurement


def delays(policy: BackoffPolicy, seed: int, n: int = 12) -> list[float]:
    b = policy.start(seed)
    return [b.next_delay() for _ in range(n)]


@pytest.mark.parametrize("name", POLICIES)
def test_same_seed_same_delays(name: str) -> None:
    p = BackoffPolicy(name, 0.1, 3.0)  # type: ignore[arg-type]
    assert delays(p, 7) == delays(p, 7)
    if "jitter" in name:
        assert delays(p, 7) != delays(p, 8)


def test_each_policy_stays_within_its_bounds() -> None:
    base, cap = 0.1, 3.0
    for seed in range(20):
        assert delays(BackoffPolicy("none", base, cap), seed) == [0.0] * 12
        assert delays(BackoffPolicy("fixed", base, cap), seed) == [base] * 12
        expo = [min(cap, base * 2**i) for i in range(12)]
        assert delays(BackoffPolicy("exponential", base, cap), seed) == expo
        for d, e in zip(delays(BackoffPolicy("full-jitter", base, cap), seed), expo, strict=True):
            assert 0.0 <= d <= e
        for d, e in zip(delays(BackoffPolicy("equal-jitter", base, cap), seed), expo, strict=True):
            assert e / 2 <= d <= e
        prev = base
        for d in delays(BackoffPolicy("decorrelated-jitter", base, cap), seed):
            assert base <= d <= min(cap, prev * 3) + 1e-12
            prev = d


def test_reset_after_success_starts_over() -> None:
    b = BackoffPolicy("exponential", 0.5, 10).start(1)
    assert [b.next_delay() for _ in range(3)] == [0.5, 1.0, 2.0]
    b.reset()
    assert b.next_delay() == 0.5


def test_parse_names_aliases_and_parameters() -> None:
    assert BackoffPolicy.parse("full") == BackoffPolicy("full-jitter", 0.5, 30.0)
    assert BackoffPolicy.parse("decorrelated-jitter:0.2:5") == BackoffPolicy("decorrelated-jitter", 0.2, 5.0)
    assert str(BackoffPolicy.parse("exp:1:8")) == "exponential:1:8"
    for bad in ("sometimes", "fixed:1", "fixed:a:b"):
        with pytest.raises(InputError, match="--backoff"):
            BackoffPolicy.parse(bad)
    with pytest.raises(InputError, match="below base"):
        BackoffPolicy("fixed", 2.0, 1.0)


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[tuple[list[Identity], str]]:
    """Two provisioned identities and the core CA (real credentials: the device loads them before dialing)."""
    cloud = Cloud(tmp_path / "state", workers=1)
    try:
        cloud.provision_core("bk")
        yield provision_load_devices(cloud, "bk", 2), cloud.core_ca("bk").pem
    finally:
        cloud.close()


def refused_port() -> int:
    """A loopback port nobody listens on: every attempt fails at once (ECONNREFUSED)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "policy",
    ["fixed:0.15:0.15", "exponential:0.05:0.4", "full-jitter:0.1:0.5", "decorrelated-jitter:0.05:0.5"],
)
def test_no_device_retries_faster_than_its_policy(devices: tuple[list[Identity], str], policy: str) -> None:
    identities, ca_pem = devices
    cfg = FleetConfig(
        devices=2,
        rate=0,
        duration_s=1.5,
        subscribers=0,
        discover=False,
        backoff=BackoffPolicy.parse(policy),
        connect_timeout_s=1.0,
        drain_s=0,
    )
    plan = make_plan(cfg, identities, broker=BrokerEndpoint("127.0.0.1", refused_port(), ca_pem))
    records: list[Measurement] = []
    FleetEngine(plan, [records.append]).run_sync()
    for spec in plan.devices:
        times = [
            m.context["t_ns"] for m in records if m.name == "connect" and m.context["device"] == spec.thing
        ]
        assert all(m.exception for m in records if m.name == "connect")
        expected = delays(cfg.backoff, spec.seed, len(times))
        assert len(times) >= 3, f"{spec.thing}: only {len(times)} attempts in 1.5 s under {policy}"
        for i, (a, b) in enumerate(itertools.pairwise(times)):
            gap = (b - a) / 1e9
            assert gap >= expected[i] - 0.002, (
                f"{spec.thing} retried after {gap:.3f} s, its {policy} policy says wait {expected[i]:.3f} s"
            )
    summary = Ledger(d.thing for d in plan.devices)
    for m in records:
        summary.add(m)
    assert summary.summary().connected == 0
