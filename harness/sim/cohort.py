"""The fast fleet engine: devices batched into cohorts sharing one simpy timer, numpy for per-device work.

Why it is fast yet computes the same model as ``naive``:

* The accept queue is FIFO and every device gives up a fixed ``connect_timeout_s`` after it arrived. Under
  those two rules the fate of an attempt is known the moment it arrives: it starts at
  ``max(arrival, earliest free slot, next token)``, and it is abandoned (costing the core nothing) exactly
  when that start lies past its deadline. This is the multi-server FIFO recursion (Kiefer-Wolfowitz) with
  deterministic patience: one small step per attempt instead of a process, a Resource request, a condition
  event and two timeouts. A bounded backlog only adds a heap of the times queued attempts leave the queue.
  Abandoning changes no state, so a run of abandoned attempts (an overloaded core) is skipped by bisection.
* An attempt can only cause another attempt after it has failed, which takes at least ``connect_timeout_s``
  (attempts against a down core are settled up front, below). So all attempts arriving in one window of that
  width are independent of each other's outcomes: such a *cohort* is woken by a single simpy timeout, pushed
  through the recursion in arrival order, and its failures get their backoff delays drawn in one numpy call.
* Attempts while the core is down never reach the accept queue; they are iterated as whole arrays until every
  device's next attempt falls after the core is back.

What differs from the reference model: the random streams (results agree statistically, not bit for bit), and
the order of events at exactly the same instant (here a queue departure goes before an arrival; there simpy's
event order decides). The network delay makes such ties vanishingly rare; with ``network_delay_s=0`` and an
un-jittered policy on a bounded backlog they are common and the engines can differ by several percent.
What it relies on: FIFO accept order and a deadline per attempt known on arrival; an accept loop that serves
the newest connection first, or per-device timeouts that change mid-attempt, would need the reference model.
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from harness.sim.config import SimConfig
from harness.sim.disruption import detection_times, down_failure_s, down_until
from harness.sim.metrics import Counters, SimMetrics, Timeline, summarize
from harness.sim.policies import backoff_delays
from harness.sim.server import TokenBucket


def cohort_width_s(config: SimConfig) -> float:
    """The shortest time from any arrival at the core to the failure it can lead to: a cohort this wide
    holds only arrivals whose outcomes cannot cause another arrival inside it.

    An attempt fails at its connect deadline (``connect_timeout_s`` after its first SYN), or, when a full
    backlog keeps dropping its SYNs, at the deadline or the last SYN's give-up time, whichever is first. A
    resent SYN arrives ``syn_rto_s`` x (2^k - 1) after the first, so the latest resend before the deadline
    is closest to its failure.
    """
    timeout = config.connect_timeout_s
    if config.backlog is None:
        return timeout
    rto, retries = config.syn_rto_s, config.syn_retries
    give_up = rto * float(2 ** (retries + 1) - 1)
    last_resend = max(o for o in (rto * (2**k - 1) for k in range(retries + 1)) if o < timeout)
    return float(min(timeout, give_up) - last_resend)


class _Calendar:
    """Pending attempts in cohorts: cohort k holds the attempts arriving in [k*width, (k+1)*width)."""

    def __init__(self, width: float) -> None:
        self.width = width
        self._cohorts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._keys: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._keys)

    def add(self, times: np.ndarray, ids: np.ndarray, earliest: int = 0) -> None:
        """File attempts (arrival times and device ids) under their cohorts, none before ``earliest``.

        ``earliest`` only guards against float rounding: a retry is at least one width after its attempt.
        """
        if times.size == 0:
            return
        keys = np.maximum((times / self.width).astype(np.int64), earliest)
        low = int(keys.min())
        span = keys - low
        # Keys span a few hundred cohorts at most (cap / width), so a 16-bit radix sort does the grouping.
        order = np.argsort(span.astype(np.uint16) if int(span.max()) < 65536 else span, kind="stable")
        keys, times, ids = keys[order], times[order], ids[order]
        first = np.concatenate(([0], np.flatnonzero(np.diff(keys)) + 1))
        bounds = [*first.tolist(), keys.size]
        for j, key in enumerate(keys[first].tolist()):
            chunk = (times[bounds[j] : bounds[j + 1]], ids[bounds[j] : bounds[j + 1]])
            if key in self._cohorts:
                self._cohorts[key].append(chunk)
            else:
                self._cohorts[key] = [chunk]
                heapq.heappush(self._keys, key)

    def peek(self) -> int:
        return self._keys[0]

    def pop(self) -> tuple[int, np.ndarray, np.ndarray]:
        """The earliest cohort: its key, and its attempts sorted by arrival time."""
        key = heapq.heappop(self._keys)
        chunks = self._cohorts.pop(key)
        times = np.concatenate([c[0] for c in chunks])
        ids = np.concatenate([c[1] for c in chunks])
        order = np.argsort(times, kind="stable")
        return key, times[order], ids[order]


class _CohortFleet:
    """State of one run, held as per-device arrays."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        n = config.devices
        self.connected_at = np.full(n, np.inf)
        self.attempts = np.zeros(n, dtype=np.int64)
        self.previous = np.full(n, config.base_s)  # decorrelated jitter's last sleep
        self.timeline = Timeline(config.sample_s, config.horizon_s)
        self.counters = Counters()
        self.slots = [0.0] * config.concurrency  # heap of the times each handshake slot is next free
        self.waiting: list[float] = []  # heap of the times queued attempts leave the queue (backlog only)
        self.first_syn = np.zeros(n)  # when each device's current attempt sent its first SYN
        self.syn_sent = np.zeros(n, dtype=np.int64)  # SYNs it has resent for that attempt
        self.sweep = (-1, 0)  # an eager core's accept sweep (index) and the SYNs the kernel queued in it
        self.bucket = TokenBucket(config.rate_limit_per_s, config.burst) if config.rate_limit_per_s else None
        self.calendar = _Calendar(cohort_width_s(config) + 0.5 * config.network_delay_s)
        self.env = simpy.Environment()

    def run(self) -> None:
        detect = detection_times(self.config, self.rng.random(self.config.devices))
        self._schedule(detect, np.arange(self.config.devices, dtype=np.int64), earliest=0)
        self.env.process(self._cohort_timer())
        self.env.run()

    def _cohort_timer(self) -> Generator[simpy.Event, Any, None]:
        """One simpy wake-up per cohort, in time order, until no attempt is left inside the horizon."""
        width = self.calendar.width
        while self.calendar and self.calendar.peek() * width <= self.config.horizon_s:
            yield self.env.timeout(max(0.0, self.calendar.peek() * width - self.env.now))
            key, times, ids = self.calendar.pop()
            self._serve(key, times, ids)

    def _schedule(self, ready: np.ndarray, ids: np.ndarray, earliest: int) -> None:
        """Queue the next attempts of devices ready to try at ``ready``; they reach the core one network
        delay later. Attempts that find the core down fail and back off here, as whole arrays."""
        cfg = self.config
        down, fail_s = down_until(cfg), down_failure_s(cfg)
        times = ready + self._network_delay(ready.size)
        while times.size:
            hit = times < down
            if not hit.any():
                break
            t, who = times[hit], ids[hit]
            self.attempts[who] += 1
            self.timeline.add("attempt", t)
            self.counters.down_failures += int(t.size)
            times[hit] = t + fail_s + self._backoff(who) + self._network_delay(t.size)
        keep = times <= cfg.horizon_s
        self.calendar.add(times[keep], ids[keep], earliest)

    def _network_delay(self, n: int) -> np.ndarray:
        return self.config.network_delay_s * self.rng.uniform(0.5, 1.5, size=n)

    def _backoff(self, who: np.ndarray) -> np.ndarray:
        cfg = self.config
        delays, previous = backoff_delays(
            cfg.policy, self.attempts[who], self.previous[who], cfg.base_s, cfg.cap_s, self.rng
        )
        if cfg.policy == "decorrelated":
            self.previous[who] = previous
        return delays

    def _serve(self, key: int, arrivals: np.ndarray, ids: np.ndarray) -> None:
        """Push one cohort through the accept queue; schedule the retries of those that failed.

        ``arrivals`` holds fresh attempts and SYNs resent after a full backlog dropped one in an earlier
        cohort (``syn_sent`` > 0: not a new attempt; its deadline still runs from its first SYN).
        """
        cfg, tl = self.config, self.timeline
        fresh = self.syn_sent[ids] == 0
        self.attempts[ids[fresh]] += 1
        tl.add("attempt", arrivals[fresh])
        self.first_syn[ids[fresh]] = arrivals[fresh]
        deadline = self.first_syn[ids] + cfg.connect_timeout_s
        service = cfg.handshake.draw(self.rng, arrivals.size)
        if cfg.backlog is None:
            starts = self._fifo(arrivals, service)
            admitted, gave_up = arrivals, np.full(arrivals.size, np.nan)
            carried = np.zeros(arrivals.size, dtype=bool)
            resend = np.empty(0)
        else:
            starts, admitted, gave_up, sent, carried, resend = self._fifo_backlog(
                arrivals, service, deadline, self.syn_sent[ids], (key + 1) * self.calendar.width
            )
            self.syn_sent[ids] = sent
        settled = ~carried
        rejected = ~np.isnan(gave_up)
        started = ~np.isnan(starts)
        done = starts + service
        ok = started & (done <= deadline)
        self.counters.handshakes += int(started.sum())
        self.counters.wasted_handshakes += int((started & ~ok).sum())
        self.counters.rejected += int(rejected.sum())
        self.counters.timeouts += int((settled & ~ok & ~rejected).sum())
        queued = ~np.isnan(admitted)
        tl.add("queue_in", admitted[queued])
        tl.add("queue_out", np.where(started, starts, deadline)[queued])
        self.connected_at[ids[ok]] = done[ok]
        tl.add("connect", done[ok])
        self.syn_sent[ids[settled]] = 0
        if carried.any():  # resent SYNs arriving after this cohort: file them under later cohorts
            self.calendar.add(resend, ids[carried], key + 1)
        lost = settled & ~ok
        failed = ids[lost]
        if failed.size:
            fail_at = np.where(rejected, gave_up, deadline)[lost]
            self._schedule(fail_at + self._backoff(failed), failed, earliest=key + 1)

    def _fifo(self, arrivals: np.ndarray, service: np.ndarray) -> np.ndarray:
        """Start time of each attempt (NaN: not started) on an unbounded accept queue.

        Continues the core's state (slots, token bucket) from the last cohort. An attempt starts at
        ``max(arrival, earliest free slot, token ready time)`` and is abandoned when that is past its
        deadline; abandoning changes nothing, so a whole run of abandoned attempts (a storm's overload) is
        skipped with one bisection. This is the engine's inner loop, hence Python floats and the token
        bucket inlined (``TokenBucket.ready``/``take``, whose state it writes back).
        """
        n = arrivals.size
        ts, sv = arrivals.tolist(), service.tolist()
        deadlines = (arrivals + self.config.connect_timeout_s).tolist()
        starts = [math.nan] * n
        heap, replace = self.slots, heapq.heapreplace
        bucket = self.bucket
        rate, burst, level, stamp = (
            (bucket.rate, bucket.burst, bucket.level, bucket.stamp) if bucket else (1.0, 1.0, 1.0, 0.0)
        )
        ready = bucket.ready() if bucket else -math.inf
        i = 0
        while i < n:
            a = ts[i]
            free = heap[0]
            m = free if free > ready else ready
            if m > deadlines[i]:  # abandoned
                i = bisect.bisect_left(deadlines, m, i + 1)
                continue
            s = a if a > m else m
            replace(heap, s + sv[i])
            starts[i] = s
            if bucket is not None:
                level = min(burst, level + (s - stamp) * rate) - 1.0
                stamp = s
                ready = s + (1.0 - level) / rate if level < 1.0 else s
            i += 1
        if bucket is not None:
            bucket.level, bucket.stamp = level, stamp
        return np.asarray(starts)

    def _fifo_backlog(
        self,
        arrivals: np.ndarray,
        service: np.ndarray,
        deadline: np.ndarray,
        syn_sent: np.ndarray,
        cohort_end: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``_fifo`` on a bounded accept queue, with the clients' SYN retransmissions.

        A SYN that finds ``backlog`` attempts queued is dropped; its client resends it ``syn_rto_s`` x
        (2^k - 1) after the first SYN (Linux: 1 s, 3 s, 7 s, ...), at most ``syn_retries`` times and only
        before its deadline. A resend due inside this cohort joins the arrivals in time order (a heap); a
        later one is returned to be filed under a later cohort. Returns, per arrival: start time (NaN: not
        started), the time its SYN got into the queue (NaN: never), the time it gave up on SYNs (NaN: it did
        not), the SYNs it has resent, whether it was carried to a later cohort; and the carried arrivals'
        resend times.
        """
        cfg = self.config
        n = arrivals.size
        ts, sv, dl = arrivals.tolist(), service.tolist(), deadline.tolist()
        first = (deadline - cfg.connect_timeout_s).tolist()
        sent = syn_sent.tolist()
        starts = [math.nan] * n
        admitted = [math.nan] * n
        gave_up = [math.nan] * n
        carried = np.zeros(n, dtype=bool)
        resend = [math.nan] * n  # by position, like ``carried`` (drops are met in time order, not position)
        heap, replace = self.slots, heapq.heapreplace
        bucket = self.bucket
        rate, burst, level, stamp = (
            (bucket.rate, bucket.burst, bucket.level, bucket.stamp) if bucket else (1.0, 1.0, 1.0, 0.0)
        )
        ready = bucket.ready() if bucket else -math.inf
        backlog, retries, rto = cfg.backlog, cfg.syn_retries, cfg.syn_rto_s
        assert backlog is not None
        interval = cfg.accept_interval_s
        sweep, swept = self.sweep  # the eager core's current accept sweep and SYNs queued in it
        waiting, push, pop = self.waiting, heapq.heappush, heapq.heappop
        later: list[tuple[float, int]] = []  # resent SYNs due inside this cohort
        retransmits = 0
        i = 0
        while i < n or later:
            if later and (i >= n or later[0][0] < ts[i]):
                a, j = pop(later)
            else:
                a, j = ts[i], i
                i += 1
            if interval is None:
                while waiting and waiting[0] <= a:
                    pop(waiting)
                full = len(waiting) >= backlog
            else:
                window = int(a / interval)
                if window != sweep:
                    sweep, swept = window, 0
                full = swept >= backlog
            if full:  # SYN dropped
                k = sent[j] + 1
                again = first[j] + rto * (2**k - 1)
                if k > retries or again >= dl[j]:
                    gave_up[j] = min(dl[j], again)
                    continue
                sent[j] = k
                retransmits += 1
                if again < cohort_end:
                    push(later, (again, j))
                else:
                    carried[j] = True
                    resend[j] = again
                continue
            admitted[j] = a
            free = heap[0]
            m = free if free > ready else ready
            if interval is not None:
                swept += 1
                if m > dl[j]:  # abandoned in the core's own (unbounded) queue
                    continue
            elif m > dl[j]:  # abandoned: it waits in the accept queue until its client gives up
                push(waiting, dl[j])
                continue
            s = a if a > m else m
            replace(heap, s + sv[j])
            starts[j] = s
            if bucket is not None:
                level = min(burst, level + (s - stamp) * rate) - 1.0
                stamp = s
                ready = s + (1.0 - level) / rate if level < 1.0 else s
            if s > a and interval is None:
                push(waiting, s)
        if bucket is not None:
            bucket.level, bucket.stamp = level, stamp
        self.sweep = (sweep, swept)
        self.counters.syn_retransmits += retransmits
        return (
            np.asarray(starts),
            np.asarray(admitted),
            np.asarray(gave_up),
            np.asarray(sent, dtype=np.int64),
            carried,
            np.asarray(resend)[carried],
        )


def run_cohort(config: SimConfig) -> SimMetrics:
    """Simulate ``config`` with the cohort engine (the fast one; 10^6 devices in well under a minute)."""
    started = time.perf_counter()
    fleet = _CohortFleet(config)
    fleet.run()
    return summarize(
        config,
        "cohort",
        fleet.connected_at,
        fleet.attempts,
        fleet.timeline,
        fleet.counters,
        time.perf_counter() - started,
    )
