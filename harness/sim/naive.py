"""The reference fleet model: one simpy process per device, the handshake slots a simpy Resource.

This is the model written the obvious way (as in simpy's bank_renege example: a customer who waits longer
than their patience reneges), and it is the definition the fast cohort engine is tested against. It costs
several simpy events and a generator per device and attempt, so it is meant for 10^3-10^5 devices.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy
from simpy.resources.resource import Request

from harness.sim.config import SimConfig
from harness.sim.disruption import detection_time, down_failure_s, down_until
from harness.sim.metrics import Counters, SimMetrics, Timeline, summarize
from harness.sim.policies import backoff_delay
from harness.sim.server import TokenBucket


class _Fleet:
    """Shared state of one run: the core's slots and rate limit, and what the devices record."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.env = simpy.Environment()
        self.slots = simpy.Resource(self.env, capacity=config.concurrency)
        self.bucket = TokenBucket(config.rate_limit_per_s, config.burst) if config.rate_limit_per_s else None
        self.rng = random.Random(config.seed)
        self.connected_at = np.full(config.devices, np.inf)
        self.attempts = np.zeros(config.devices, dtype=np.int64)
        self.counters = Counters()
        self.attempt_times: list[float] = []
        self.connect_times: list[float] = []
        self.queue_in: list[float] = []
        self.queue_out: list[float] = []
        self.waiting = 0  # attempts queued for a slot or a token, for the backlog limit
        self.sweep = (-1, 0)  # an eager core's accept sweep (index) and the SYNs the kernel queued in it

    def device(self, index: int) -> Generator[simpy.Event, Any, None]:
        """One device: notice the disruption, then attempt, time out or fail, back off, until connected."""
        cfg, env, rng = self.config, self.env, self.rng
        yield env.timeout(detection_time(cfg, rng.random()))
        failures = 0
        previous = cfg.base_s
        while True:
            yield env.timeout(cfg.network_delay_s * rng.uniform(0.5, 1.5))
            self.attempts[index] += 1
            self.attempt_times.append(env.now)
            if env.now < down_until(cfg):
                yield env.timeout(down_failure_s(cfg))
                self.counters.down_failures += 1
            else:
                connected = yield from self._attempt()
                if connected:
                    self.connected_at[index] = env.now
                    self.connect_times.append(env.now)
                    return
            failures += 1
            delay, previous = backoff_delay(cfg.policy, failures, previous, cfg.base_s, cfg.cap_s, rng)
            yield env.timeout(delay)

    def _attempt(self) -> Generator[simpy.Event, Any, bool]:
        """One connection attempt against a running core; True when the handshake finished in time."""
        cfg, env = self.config, self.env
        first = env.now
        deadline = first + cfg.connect_timeout_s
        retransmits = 0
        while cfg.backlog is not None and self._backlog_full():
            # Backlog full: the kernel drops the SYN; the client resends it after 1, 3, 7, ... RTOs.
            retransmits += 1
            resend = first + cfg.syn_rto_s * (2**retransmits - 1)
            if retransmits > cfg.syn_retries or resend >= deadline:
                yield env.timeout(min(deadline, resend) - env.now)
                self.counters.rejected += 1
                return False
            self.counters.syn_retransmits += 1
            yield env.timeout(resend - env.now)
        if cfg.accept_interval_s is not None:
            self.sweep = (self.sweep[0], self.sweep[1] + 1)
        else:
            self.waiting += 1
        self.queue_in.append(env.now)
        req = self.slots.request()
        yield req | env.timeout(deadline - env.now)
        if not req.triggered:  # still queued at the deadline: renege
            req.cancel()
            self._dequeue()
            self.counters.timeouts += 1
            return False
        start = self.bucket.start_time(env.now) if self.bucket else env.now
        if start > deadline:  # the rate limit would start it too late: give the slot back, wait, fail
            self.slots.release(req)
            yield env.timeout(deadline - env.now)
            self._dequeue()
            self.counters.timeouts += 1
            return False
        if self.bucket:
            self.bucket.take(start)
        yield env.timeout(start - env.now)
        self._dequeue()
        self.counters.handshakes += 1
        service = cfg.handshake.draw_one(self.rng)
        if start + service <= deadline:
            yield env.timeout(service)
            self.slots.release(req)
            return True
        # The device gives up at its deadline; the core only notices when it finishes the handshake.
        env.process(self._finish_abandoned(req, service))
        yield env.timeout(deadline - env.now)
        self.counters.wasted_handshakes += 1
        self.counters.timeouts += 1
        return False

    def _backlog_full(self) -> bool:
        """Whether the kernel drops a SYN now: the accept queue (lazy core) or this sweep's share of the
        listen backlog (eager core, ``accept_interval_s``) is full."""
        cfg = self.config
        assert cfg.backlog is not None
        if cfg.accept_interval_s is None:
            return self.waiting >= cfg.backlog
        window = int(self.env.now / cfg.accept_interval_s)
        if window != self.sweep[0]:
            self.sweep = (window, 0)
        return self.sweep[1] >= cfg.backlog

    def _dequeue(self) -> None:
        self.queue_out.append(self.env.now)
        if self.config.accept_interval_s is None:
            self.waiting -= 1

    def _finish_abandoned(self, req: Request, service: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(service)
        self.slots.release(req)


def run_naive(config: SimConfig) -> SimMetrics:
    """Simulate ``config`` with one simpy process per device (the reference model)."""
    started = time.perf_counter()
    fleet = _Fleet(config)
    for index in range(config.devices):
        fleet.env.process(fleet.device(index))
    fleet.env.run(until=config.horizon_s)
    timeline = Timeline(config.sample_s, config.horizon_s)
    for kind, values in (
        ("attempt", fleet.attempt_times),
        ("connect", fleet.connect_times),
        ("queue_in", fleet.queue_in),
        ("queue_out", fleet.queue_out),
    ):
        timeline.add(kind, np.asarray(values, dtype=np.float64))
    return summarize(
        config,
        "naive",
        fleet.connected_at,
        fleet.attempts,
        timeline,
        fleet.counters,
        time.perf_counter() - started,
    )
