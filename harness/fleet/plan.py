"""What a load run asks of the fleet: the user's knobs (``FleetConfig``) and, per device, what it will do
(``DeviceSpec``), bundled with how devices find the core (``FleetPlan``).

A plan is plain JSON-able data so a locust worker or a worker process can run exactly the devices the
harness planned; every engine reads the same ``DeviceSpec``, which is what keeps a device's behaviour the same
whichever engine runs it.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.errors import InputError
from harness.fleet.backoff import BackoffPolicy
from harness.fleet.payload import MIN_PAYLOAD_BYTES

EngineName = Literal["asyncio", "sdk"]
StormKind = Literal["restart", "rotate"]
#: Hard bounds so that no plan can run away (the spec: every load is bounded in count and time).
MAX_DEVICES = 50_000
MAX_DURATION_S = 24 * 3600.0
MAX_RATE = 1000.0


@dataclass(frozen=True)
class FleetConfig:
    """The knobs of one load run (command-line options and scenario parameters)."""

    devices: int = 100
    #: L1 ramp: devices starting per second.
    connect_rate: float = 100.0
    #: L2: messages per second per device (0: connect only).
    rate: float = 1.0
    qos: int = 0
    #: Seconds of steady telemetry, counted from the moment every device is connected (or gave up).
    duration_s: float = 10.0
    payload_bytes: int = 64
    #: How many devices also subscribe (spread evenly over the fleet); each gets every matching message.
    subscribers: int = 1
    subscribe_filter: str = "relay/#"
    topic_prefix: str = "relay"
    keepalive_s: int = 30
    clean_session: bool = True
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    seed: int = 1
    #: Devices discover the core through the discovery endpoint first (as real devices do).
    discover: bool = True
    #: How many devices run the real AWS IoT Device SDK (discovery and MQTT) instead of the bulk engine.
    sdk_devices: int = 0
    connect_timeout_s: float = 30.0
    #: After publishing stops: wait at most this long for messages still in flight.
    drain_s: float = 5.0
    max_inflight: int = 100
    #: L3: restart the core or rotate its certificate this many seconds into the telemetry phase.
    storm: StormKind | None = None
    storm_at_s: float = 2.0
    #: L3: after the storm, wait at most this long for the fleet to come back (may outlast ``duration_s``).
    reconnect_timeout_s: float = 60.0

    def validate(self) -> FleetConfig:
        """Raise ``InputError`` naming the option, so the CLI reports it with exit status 2."""
        checks: list[tuple[bool, str]] = [
            (1 <= self.devices <= MAX_DEVICES, f"--devices must be 1..{MAX_DEVICES}, got {self.devices}"),
            (0 < self.connect_rate <= 100_000, f"--connect-rate must be > 0, got {self.connect_rate}"),
            (
                0 <= self.rate <= MAX_RATE,
                f"--rate must be 0..{MAX_RATE:g} messages/s per device, got {self.rate}",
            ),
            (self.qos in (0, 1), f"--qos must be 0 or 1, got {self.qos}"),
            (
                0 < self.duration_s <= MAX_DURATION_S,
                f"--duration must be 0..{MAX_DURATION_S:g} s, got {self.duration_s}",
            ),
            (
                MIN_PAYLOAD_BYTES <= self.payload_bytes <= 128 * 1024,
                f"--payload-bytes must be {MIN_PAYLOAD_BYTES}..131072, got {self.payload_bytes}",
            ),
            (
                0 <= self.subscribers <= self.devices,
                f"--subscribers must be 0..{self.devices}, got {self.subscribers}",
            ),
            (
                0 <= self.sdk_devices <= self.devices,
                f"--sdk-devices must be 0..{self.devices}, got {self.sdk_devices}",
            ),
            (
                not self.sdk_devices or self.discover,
                "--sdk-devices needs discovery (the SDK discovers the core)",
            ),
            (5 <= self.keepalive_s <= 1200, f"keepalive must be 5..1200 s, got {self.keepalive_s}"),
            (self.connect_timeout_s > 0, "connect timeout must be > 0"),
            (0 <= self.drain_s <= 600, f"drain must be 0..600 s, got {self.drain_s}"),
            (self.max_inflight >= 1, "max_inflight must be >= 1"),
            (
                self.storm in (None, "restart", "rotate"),
                f"--storm must be restart or rotate, got {self.storm!r}",
            ),
            (
                0 <= self.storm_at_s < self.duration_s or self.storm is None,
                f"storm at {self.storm_at_s} s must fall inside the {self.duration_s} s telemetry phase",
            ),
            (0 < self.reconnect_timeout_s <= 3600, "reconnect timeout must be 0..3600 s"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        return self

    @property
    def ramp_s(self) -> float:
        return (self.devices - 1) / self.connect_rate

    def time_bound_s(self) -> float:
        """An upper bound of the run's wall time; the engine aborts past it."""
        storm = self.reconnect_timeout_s if self.storm else 0.0
        return self.ramp_s + 2 * self.connect_timeout_s + self.duration_s + storm + self.drain_s + 30.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["backoff"] = str(self.backoff)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FleetConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["backoff"] = BackoffPolicy.parse(str(known.get("backoff", "full-jitter")))
        return cls(**known)


@dataclass(frozen=True)
class DeviceSpec:
    """One device: its identity, engine, role and timing. ``connect_at_s`` counts from the fleet's start."""

    index: int
    thing: str
    cert_path: str
    key_path: str
    engine: EngineName
    topic: str
    subscribe: str | None
    connect_at_s: float
    phase_s: float
    seed: int


@dataclass(frozen=True)
class DiscoveryEndpoint:
    """The offline cloud's discovery endpoint (mutual TLS with the root CA)."""

    host: str
    port: int
    root_ca_path: str


@dataclass(frozen=True)
class BrokerEndpoint:
    """A core's broker, for devices that skip discovery: where, and the core CA that signs its certificate."""

    host: str
    port: int
    ca_pem: str


@dataclass
class FleetPlan:
    config: FleetConfig
    devices: list[DeviceSpec]
    discovery: DiscoveryEndpoint | None = None
    broker: BrokerEndpoint | None = None
    #: When set (locust shards in several processes), telemetry starts at this Unix time for every shard.
    publish_start_unix: float | None = None
    #: ``time.time()`` the ramp counts from, when shards must share one (else: the engine's start).
    start_unix: float | None = None

    def __post_init__(self) -> None:
        if self.discovery is None and self.broker is None:
            raise InputError("a fleet plan needs a discovery endpoint or a broker endpoint")
        if self.config.discover and self.discovery is None:
            raise InputError("devices are to discover the core, but the plan has no discovery endpoint")
        if not self.config.discover and self.broker is None:
            raise InputError("devices skip discovery, but the plan has no broker endpoint")

    def shard(self, index: int, count: int) -> FleetPlan:
        """Devices ``index, index + count, ...``: shards interleave, so each keeps the fleet's ramp shape."""
        if not 0 <= index < count:
            raise InputError(f"shard {index} of {count} does not exist")
        return replace(self, devices=self.devices[index::count])

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_json(),
            "devices": [asdict(d) for d in self.devices],
            "discovery": asdict(self.discovery) if self.discovery else None,
            "broker": asdict(self.broker) if self.broker else None,
            "publish_start_unix": self.publish_start_unix,
            "start_unix": self.start_unix,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FleetPlan:
        return cls(
            config=FleetConfig.from_json(data["config"]),
            devices=[DeviceSpec(**d) for d in data["devices"]],
            discovery=DiscoveryEndpoint(**data["discovery"]) if data.get("discovery") else None,
            broker=BrokerEndpoint(**data["broker"]) if data.get("broker") else None,
            publish_start_unix=data.get("publish_start_unix"),
            start_unix=data.get("start_unix"),
        )

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json()), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> FleetPlan:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a fleet plan: {exc}") from None


@dataclass(frozen=True)
class Identity:
    """A provisioned device: thing name and the paths of its certificate and key."""

    thing: str
    cert_path: Path
    key_path: Path


def make_plan(
    config: FleetConfig,
    identities: list[Identity],
    *,
    discovery: DiscoveryEndpoint | None = None,
    broker: BrokerEndpoint | None = None,
) -> FleetPlan:
    """Assign roles and timing to ``config.devices`` identities, deterministically from ``config.seed``.

    Subscribers are spread evenly over the fleet (so every shard gets some), the SDK slice is the last
    ``sdk_devices`` devices, device ``i`` starts at ``i / connect_rate`` and publishes at a random phase
    inside its period so the fleet does not publish in lock-step.
    """
    config.validate()
    if len(identities) < config.devices:
        raise InputError(
            f"{config.devices} devices requested but only {len(identities)} identities provisioned"
        )
    rng = random.Random(config.seed)
    n = config.devices
    subscriber_idx: set[int] = set()
    if config.subscribers:
        step = n / config.subscribers
        subscriber_idx = {min(n - 1, math.floor(k * step)) for k in range(config.subscribers)}
    period = 1.0 / config.rate if config.rate > 0 else 0.0
    devices = []
    for i, ident in enumerate(identities[:n]):
        devices.append(
            DeviceSpec(
                index=i,
                thing=ident.thing,
                cert_path=str(ident.cert_path),
                key_path=str(ident.key_path),
                engine="sdk" if i >= n - config.sdk_devices else "asyncio",
                topic=f"{config.topic_prefix}/{ident.thing}/telemetry",
                subscribe=config.subscribe_filter if i in subscriber_idx else None,
                connect_at_s=i / config.connect_rate,
                phase_s=rng.uniform(0.0, period),
                seed=rng.getrandbits(48),
            )
        )
    return FleetPlan(config, devices, discovery, broker)
