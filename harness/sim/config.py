"""What a fleet-model run simulates: the core's accept capacity, the disruption, the devices' backoff policy.

One frozen dataclass goes into every engine (``SimConfig``), so the simpy reference model and the cohort
engine cannot drift apart in what they are told. Validation happens when the config is built and raises
``InputError`` naming the field, because configs come from the command line and from calibration files.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

import numpy as np

from harness.errors import InputError

Policy = Literal["none", "fixed", "exponential", "full", "equal", "decorrelated"]
POLICIES: tuple[Policy, ...] = get_args(Policy)
#: The name the AWS Architecture Blog post "Exponential Backoff And Jitter" uses for each policy.
POLICY_TITLES: dict[str, str] = {
    "none": "no backoff",
    "fixed": "fixed delay",
    "exponential": "exponential (no jitter)",
    "full": "exponential + full jitter",
    "equal": "exponential + equal jitter",
    "decorrelated": "decorrelated jitter",
}

Event = Literal["outage", "rotation"]
EVENTS: tuple[Event, ...] = get_args(Event)

# z of the 95th percentile of a standard normal: turns (median, p95) into a lognormal sigma.
_Z95 = 1.6448536269514722


@dataclass(frozen=True)
class ServiceTime:
    """TLS handshake service time on the core: a lognormal through (median, p95), or resampled measurements.

    Lognormal because handshake times are positive and right-skewed (a few slow ones behind a GC pause or a
    busy CPU); with measured ``samples_s`` the model draws from those directly and assumes no shape at all.
    """

    median_s: float = 0.020
    p95_s: float = 0.030
    samples_s: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.samples_s:
            bad = [s for s in self.samples_s if not (math.isfinite(s) and s > 0)]
            if bad:
                raise InputError(f"handshake samples: every sample must be > 0 s, got {bad[0]!r}")
            return
        if not (math.isfinite(self.median_s) and self.median_s > 0):
            raise InputError(f"handshake median: must be > 0, got {self.median_s!r} s")
        if not (math.isfinite(self.p95_s) and self.p95_s >= self.median_s):
            raise InputError(
                f"handshake p95: must be >= the median ({self.median_s:g} s), got {self.p95_s!r} s"
            )

    @property
    def sigma(self) -> float:
        return math.log(self.p95_s / self.median_s) / _Z95

    @property
    def mean_s(self) -> float:
        """Mean service time; with the concurrency it fixes the core's accept capacity (Little's law)."""
        if self.samples_s:
            return float(np.mean(self.samples_s))
        return self.median_s * math.exp(self.sigma**2 / 2)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` service times (seconds) for the vectorised engine."""
        if self.samples_s:
            return rng.choice(np.asarray(self.samples_s, dtype=np.float64), size=n)
        if self.p95_s == self.median_s:
            return np.full(n, self.median_s)
        return rng.lognormal(math.log(self.median_s), self.sigma, size=n)

    def draw_one(self, rng: random.Random) -> float:
        """One service time for the per-device reference model (same distribution as ``draw``)."""
        if self.samples_s:
            return rng.choice(self.samples_s)
        if self.p95_s == self.median_s:
            return self.median_s
        return rng.lognormvariate(math.log(self.median_s), self.sigma)


@dataclass(frozen=True)
class SimConfig:
    """One fleet-model run. Times are in seconds; the disruption starts at t = 0 with every device connected.

    Core: ``concurrency`` handshakes at a time (a simpy Resource in the reference model), FIFO accept queue,
    optional token-bucket limit on handshake starts (``rate_limit_per_s``, ``rate_burst``). A device gives an
    attempt up ``connect_timeout_s`` after it began (queueing and handshake together) and backs off.

    Disruption (``event``):
      * ``outage``: the core goes silent for ``outage_s``; a device notices at its next keep-alive ping
        (phase uniform in [0, keepalive_s)): at once (RST) if the core is back by then, otherwise after a
        ping timeout of ``ping_timeout_fraction * keepalive_s`` - so within 1.5 x keep-alive at most.
        Attempts while the core is silent fail after ``connect_timeout_s``.
      * ``rotation``: the core closes every connection at t = 0 (certificate rotation, restart), so all
        devices notice at once; it refuses connections for ``outage_s`` (each refused attempt fails after
        ``refused_s``).

    ``backlog`` bounds the accept queue (None: unbounded), as the kernel's listen backlog does (the broker's
    ``listen()`` argument capped at ``net.core.somaxconn``): a SYN finding it full is dropped and the client
    retransmits it as Linux does, ``syn_rto_s`` x (1, 3, 7, 15, ...) after its first SYN (initial RTO 1 s,
    doubling), at most ``syn_retries`` times (``net.ipv4.tcp_syn_retries``); the attempt fails at its connect
    deadline or when the last retransmission's RTO runs out, whichever comes first. Where that queue sits
    depends on the core: by default it is the queue for a handshake slot (a core that accepts only when it can
    start a handshake). With ``accept_interval_s`` the core accepts eagerly, as a single-threaded event loop
    such as mosquitto's does: every ``accept_interval_s`` it takes everything the kernel queued into its own,
    unbounded handshake queue, so the backlog only bounds the SYNs arriving between two such sweeps.
    Every attempt reaches the core ``network_delay_s`` x uniform(0.5, 1.5) after the device starts it: real
    networks never deliver two devices' packets at the same instant, and without this un-jittered policies
    put whole waves on exactly the same timestamps.

    ``horizon_s`` bounds simulated time: a device not reconnected by then counts as not reconnected.
    """

    devices: int
    policy: Policy = "full"
    base_s: float = 1.0
    cap_s: float = 60.0
    handshake: ServiceTime = field(default_factory=ServiceTime)
    concurrency: int = 8
    rate_limit_per_s: float | None = None
    rate_burst: float | None = None
    backlog: int | None = None
    syn_retries: int = 6
    syn_rto_s: float = 1.0
    accept_interval_s: float | None = None
    connect_timeout_s: float = 5.0
    network_delay_s: float = 0.002
    event: Event = "outage"
    outage_s: float = 30.0
    keepalive_s: float = 60.0
    ping_timeout_fraction: float = 0.5
    refused_s: float = 0.05
    horizon_s: float = 3600.0
    sample_s: float = 0.1
    seed: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 1:
            raise InputError(f"devices: must be a whole number >= 1, got {self.devices!r}")
        if self.policy not in POLICIES:
            raise InputError(f"policy: {self.policy!r} is not one of {', '.join(POLICIES)}")
        if self.event not in EVENTS:
            raise InputError(f"event: {self.event!r} is not one of {', '.join(EVENTS)}")
        if (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise InputError(f"concurrency: must be a whole number >= 1, got {self.concurrency!r}")
        if self.backlog is not None and (
            isinstance(self.backlog, bool) or not isinstance(self.backlog, int) or self.backlog < 0
        ):
            raise InputError(f"backlog: must be a whole number >= 0 (or unset), got {self.backlog!r}")
        retries = self.syn_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InputError(f"syn_retries: must be a whole number >= 0, got {self.syn_retries!r}")
        _positive("syn_rto_s", self.syn_rto_s)
        if self.accept_interval_s is not None:
            _positive("accept_interval_s", self.accept_interval_s)
            if self.backlog is None:
                raise InputError("accept_interval_s: needs a backlog (the kernel queue it empties)")
        _positive("connect_timeout_s", self.connect_timeout_s)
        _positive("keepalive_s", self.keepalive_s)
        _positive("refused_s", self.refused_s)
        _positive("horizon_s", self.horizon_s)
        _positive("sample_s", self.sample_s)
        _non_negative("base_s", self.base_s)
        _non_negative("network_delay_s", self.network_delay_s)
        _non_negative("outage_s", self.outage_s)
        _non_negative("ping_timeout_fraction", self.ping_timeout_fraction)
        if self.policy in ("exponential", "full", "equal", "decorrelated") and self.base_s <= 0:
            raise InputError(f"base_s: policy {self.policy!r} needs a base > 0 (it doubles it), got 0")
        if not (math.isfinite(self.cap_s) and self.cap_s >= self.base_s):
            raise InputError(f"cap_s: must be >= base_s ({self.base_s:g} s), got {self.cap_s!r}")
        if self.rate_limit_per_s is not None:
            _positive("rate_limit_per_s", self.rate_limit_per_s)
        if self.rate_burst is not None and not (math.isfinite(self.rate_burst) and self.rate_burst >= 1):
            raise InputError(f"rate_burst: must be >= 1 token, got {self.rate_burst!r}")

    @property
    def burst(self) -> float:
        """Token-bucket depth: by default one token per handshake slot, so an idle core fills every slot."""
        return self.rate_burst if self.rate_burst is not None else float(max(self.concurrency, 1))

    @property
    def capacity_per_s(self) -> float:
        """Most handshakes per second the core completes when saturated."""
        cap = self.concurrency / self.handshake.mean_s
        return min(cap, self.rate_limit_per_s) if self.rate_limit_per_s else cap

    def to_json(self) -> dict[str, object]:
        """The config as plain JSON values (simulate.json records what produced each result)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ServiceTime):
                value = {
                    "median_s": value.median_s,
                    "p95_s": value.p95_s,
                    "samples": len(value.samples_s),
                    "mean_s": value.mean_s,
                }
            out[f.name] = value
        out["capacity_per_s"] = self.capacity_per_s
        return out


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise InputError(f"{name}: must be a number > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise InputError(f"{name}: must be a number >= 0, got {value!r}")
