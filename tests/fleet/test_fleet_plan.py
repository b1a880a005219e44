"""Fleet plans: deterministic roles and timing, shards, JSON round trip, option validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InputError
from harness.fleet.plan import BrokerEndpoint, DiscoveryEndpoint, FleetConfig, FleetPlan, Identity, make_plan

IDS = [Identity(f"c-dev-{i:04d}", Path(f"/x/{i}.pem"), Path(f"/x/{i}.key")) for i in range(100)]
BROKER = BrokerEndpoint("127.0.0.1", 8883, "pem")
DISCOVERY = DiscoveryEndpoint("127.0.0.1", 8443, "/x/root-ca.pem")


def test_roles_and_timing_are_deterministic_and_spread() -> None:
    cfg = FleetConfig(devices=100, connect_rate=50, rate=2, subscribers=4, sdk_devices=3)
    a = make_plan(cfg, IDS, discovery=DISCOVERY)
    assert a.devices == make_plan(cfg, IDS, discovery=DISCOVERY).devices
    subs = [d.index for d in a.devices if d.subscribe]
    assert subs == [0, 25, 50, 75]
    assert [d.index for d in a.devices if d.engine == "sdk"] == [97, 98, 99]
    assert a.devices[10].connect_at_s == pytest.approx(0.2)
    assert all(0 <= d.phase_s < 0.5 for d in a.devices)
    assert a.devices[3].topic == "relay/c-dev-0003/telemetry"
    other = make_plan(FleetConfig(devices=100, rate=2, seed=2, discover=False), IDS, broker=BROKER)
    assert [d.phase_s for d in other.devices] != [d.phase_s for d in a.devices]


def test_shards_interleave_and_cover_the_fleet() -> None:
    plan = make_plan(FleetConfig(devices=10, discover=False), IDS, broker=BROKER)
    shards = [plan.shard(i, 3) for i in range(3)]
    assert sorted(d.index for s in shards for d in s.devices) == list(range(10))
    assert [d.index for d in shards[1].devices] == [1, 4, 7]
    with pytest.raises(InputError):
        plan.shard(3, 3)


def test_json_round_trip(tmp_path: Path) -> None:
    plan = make_plan(FleetConfig(devices=5, storm="restart", discover=False), IDS, broker=BROKER)
    assert FleetPlan.read(plan.write(tmp_path / "p.json")) == plan


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"devices": 0}, "--devices"),
        ({"qos": 2}, "--qos"),
        ({"rate": -1}, "--rate"),
        ({"subscribers": 500}, "--subscribers"),
        ({"storm": "restart", "storm_at_s": 20.0}, "storm at"),
        ({"payload_bytes": 10}, "--payload-bytes"),
    ],
)
def test_bad_options_name_the_option(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        FleetConfig(**kwargs).validate()  # type: ignore[arg-type]


def test_a_plan_needs_a_way_to_the_core() -> None:
    with pytest.raises(InputError, match="discovery endpoint"):
        make_plan(FleetConfig(devices=1), IDS)
    with pytest.raises(InputError, match="needs discovery"):
        make_plan(FleetConfig(devices=2, sdk_devices=1, discover=False), IDS, broker=BROKER)
    with pytest.raises(InputError, match="only 100 identities"):
        make_plan(FleetConfig(devices=101, discover=False), IDS, broker=BROKER)
