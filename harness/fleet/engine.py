"""The fleet engine: thousands of simulated devices on one asyncio event loop, driven through the phases of
a load run (ramp -> telemetry -> optional storm -> drain -> disconnect), bounded in time.

The engine owns the phases; devices (``harness.fleet.device``) own their behaviour; clients own the bytes.
It runs in the calling thread (``run_sync``) with any selector, which is how a locust worker runs it: in a
native thread with the original epoll, beside gevent.
"""

from __future__ import annotations

import asyncio
import heapq
import resource
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InfraError
from harness.fleet.aio_client import AioMqttClient
from harness.fleet.device import DeviceClient, SimDevice
from harness.fleet.ledger import FLEET
from harness.fleet.plan import FleetPlan
from harness.fleet.sinks import Recorder, Sink

Progress = Callable[[str], None]
TICK_S = 1.0
#: Publish slots this close ahead of the loop clock are sent in the current timer round.
TIMER_SLACK_S = 0.001
#: After a storm's core operation, how long to wait for a first disconnect before deciding there was none.
QUIET_AFTER_STORM_S = 5.0


@dataclass
class EngineReport:
    """When each phase happened (Unix time) and what the engine itself cost."""

    devices: int
    started_unix: float
    publish_start_unix: float | None = None
    publish_end_unix: float | None = None
    ended_unix: float = 0.0
    overran: bool = False
    storm_error: str | None = None
    cpu_s: float = 0.0
    #: CPU of the telemetry phase alone (from its start to its end, storm included): the cost of messages.
    publish_cpu_s: float = 0.0
    rss_mb: float = 0.0
    #: The event loop's module: ``uvloop`` or ``asyncio``.
    loop: str = ""
    errors: list[str] = field(default_factory=list)


class FleetControl:
    """Phase state shared by every device of one engine (event-loop thread only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, t0: float, devices: int) -> None:
        self.loop = loop
        self.t0 = t0
        self.pub_start: float | None = None
        self.pub_end = float("inf")
        self.publish_over = False
        self.stopping = False
        self.last_rx = 0
        self.devices: list[SimDevice] = []
        self.online: set[int] = set()
        self.last_connect: dict[int, float] = {}
        self.drops = 0
        self._waiting_ready = devices
        self.all_ready = asyncio.Event()
        if devices == 0:
            self.all_ready.set()
        # The publish schedule of every device: one heap and one loop timer for the whole fleet, instead of
        # a timer, a future and a coroutine step per device and message (the engine's main cost at rate).
        self._heap: list[tuple[float, int, SimDevice]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._firing = False

    def book(self, dev: SimDevice, due: float) -> None:
        """Call ``dev._pump`` at loop time ``due`` (a device holds at most one booking)."""
        heapq.heappush(self._heap, (due, dev.spec.index, dev))
        if not self._firing and due < self._timer_at:
            self._arm(due)

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        heap = self._heap
        # Within the loop clock's resolution (1 ms on uvloop) a slot counts as due: otherwise a timer
        # rounded down would find nothing due and spin until the clock catches up.
        horizon = self.loop.time() + TIMER_SLACK_S
        self._firing = True
        try:
            while heap and heap[0][0] <= horizon:
                dev = heapq.heappop(heap)[2]
                dev._booked = False
                dev._pump(horizon)
        finally:
            self._firing = False
            if heap:
                self._arm(heap[0][0])

    def wake_all(self) -> None:
        for d in self.devices:
            d.wake()

    def ready(self, dev: SimDevice) -> None:
        """The device's first connection attempt sequence is over (connected and subscribed, or gave up)."""
        self._waiting_ready -= 1
        if self._waiting_ready <= 0:
            self.all_ready.set()

    def connected(self, dev: SimDevice) -> None:
        self.online.add(dev.spec.index)
        self.last_connect[dev.spec.index] = self.loop.time()

    def disconnected(self, dev: SimDevice) -> None:
        if dev.spec.index in self.online:
            self.drops += 1
        self.online.discard(dev.spec.index)

    def inflight(self) -> int:
        return sum(d.inflight for d in self.devices)


class FleetEngine:
    """Runs a ``FleetPlan``; records go to ``sinks``. ``storm`` is the blocking core operation of L3."""

    def __init__(
        self,
        plan: FleetPlan,
        sinks: list[Sink],
        *,
        storm: Callable[[], None] | None = None,
        progress: Progress | None = None,
    ) -> None:
        if plan.config.storm and storm is None and plan.devices:
            raise InfraError(f"the plan asks for a {plan.config.storm} storm but nothing can perform it")
        self.plan = plan
        self.recorder = Recorder(sinks)
        self.storm = storm
        self.progress = progress or (lambda _msg: None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._phases_task: asyncio.Task[None] | None = None
        self.control: FleetControl | None = None

    # -- entry points -----------------------------------------------------------------------------
    def run_sync(self, selector: selectors.BaseSelector | None = None) -> EngineReport:
        """Run on a new event loop in this thread (``selector``: e.g. the original epoll under gevent)."""
        loop = asyncio.SelectorEventLoop(selector) if selector is not None else new_event_loop()
        main = loop.create_task(self.run())
        try:
            return loop.run_until_complete(main)
        except BaseException:
            # Ctrl-C (or any error escaping the loop): let the run's own clean-up disconnect and abort
            # every device (bounded), so nothing is left pending when the loop closes.
            if not main.done():
                main.cancel()
                loop.run_until_complete(asyncio.wait({main}, timeout=30.0))
            raise
        finally:
            try:
                _cancel_leftovers(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def stop(self) -> None:
        """Thread-safe: end the run now (devices still disconnect cleanly)."""
        loop, task = self._loop, self._phases_task
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    async def run(self) -> EngineReport:
        plan, cfg = self.plan, self.plan.config
        loop = asyncio.get_running_loop()
        self._loop = loop
        cpu0 = time.thread_time()
        now_unix = time.time()
        t0 = loop.time() + (plan.start_unix - now_unix if plan.start_unix is not None else 0.05)
        report = EngineReport(devices=len(plan.devices), started_unix=now_unix)
        report.loop = type(loop).__module__.split(".")[0]
        ctl = self.control = FleetControl(loop, t0, len(plan.devices))
        discovery_ca = (
            Path(plan.discovery.root_ca_path).read_text() if cfg.discover and plan.discovery else None
        )
        runtime = None
        if any(s.engine == "sdk" for s in plan.devices):
            from harness.fleet.sdk_client import SdkRuntime

            runtime = SdkRuntime()
        clients: list[DeviceClient] = []
        for spec in plan.devices:
            dev = SimDevice(spec, cfg, ctl, self.recorder)
            ctl.devices.append(dev)
            client: DeviceClient
            if spec.engine == "sdk":
                from harness.fleet.sdk_client import SdkMqttClient

                assert runtime is not None
                client = SdkMqttClient(
                    spec,
                    loop,
                    runtime,
                    keepalive=cfg.keepalive_s,
                    clean_session=cfg.clean_session,
                    on_message=dev.on_message,
                    on_closed=dev.on_closed,
                    discovery=plan.discovery if cfg.discover else None,
                    broker=plan.broker,
                )
            else:
                client = AioMqttClient(
                    spec,
                    loop,
                    keepalive=cfg.keepalive_s,
                    clean_session=cfg.clean_session,
                    on_message=dev.on_message,
                    on_closed=dev.on_closed,
                    discovery=plan.discovery if cfg.discover else None,
                    discovery_ca=discovery_ca,
                    broker=plan.broker,
                )
            clients.append(client)
        tasks = [
            loop.create_task(d.run(c), name=f"device-{d.spec.thing}")
            for d, c in zip(ctl.devices, clients, strict=True)
        ]
        house = loop.create_task(self._housekeeping(clients))
        self._phases_task = loop.create_task(self._phases(ctl, report))
        try:
            await asyncio.wait_for(asyncio.shield(self._phases_task), cfg.time_bound_s())
        except TimeoutError:
            report.overran = True
            self._phases_task.cancel()
            self.progress(f"fleet: the run overran its {cfg.time_bound_s():.0f} s bound; stopping")
        except asyncio.CancelledError:
            if not self._phases_task.cancelled():
                raise
            self.progress("fleet: stopped on request")
        finally:
            ctl.stopping = True
            if not self._phases_task.done():  # the run itself was cancelled (Ctrl-C)
                self._phases_task.cancel()
            ctl.wake_all()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=15.0)
                for c in clients:
                    c.abort()
                for t in pending:
                    t.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=5.0)
            house.cancel()
            await asyncio.gather(house, return_exceptions=True)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    exc = t.exception()
                    report.errors.append(f"{t.get_name()}: {type(exc).__name__}: {exc}")
            if runtime is not None:
                runtime.close()
        report.ended_unix = time.time()
        report.cpu_s = round(time.thread_time() - cpu0, 3)
        report.rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
        if report.errors:
            raise InfraError("fleet engine bug: " + "; ".join(report.errors[:5]))
        return report

    # -- phases -----------------------------------------------------------------------------------
    async def _phases(self, ctl: FleetControl, report: EngineReport) -> None:
        plan, cfg = self.plan, self.plan.config
        loop = ctl.loop
        n = len(plan.devices)
        self.progress(f"fleet: {n} devices ramping up at {cfg.connect_rate:g}/s")
        if plan.publish_start_unix is not None:
            await _sleep_until(loop, loop.time() + plan.publish_start_unix - time.time())
        else:
            limit = ctl.t0 + cfg.ramp_s + cfg.connect_timeout_s * (2 if cfg.discover else 1)
            try:
                await asyncio.wait_for(ctl.all_ready.wait(), max(0.0, limit - loop.time()))
            except TimeoutError:
                pass
        ctl.pub_start = loop.time()
        ctl.pub_end = ctl.pub_start + cfg.duration_s
        report.publish_start_unix = time.time()
        cpu_pub = time.thread_time()
        ctl.wake_all()
        self.progress(
            f"fleet: {len(ctl.online)} of {n} connected; telemetry for {cfg.duration_s:g} s "
            f"({cfg.rate:g} msg/s per device, QoS {cfg.qos})"
        )
        if cfg.storm and self.storm is not None and plan.publish_start_unix is None:
            await _sleep_until(loop, ctl.pub_start + cfg.storm_at_s)
            report.storm_error = await self._storm(ctl)
        await _sleep_until(loop, ctl.pub_end)
        ctl.publish_over = True
        report.publish_end_unix = time.time()
        report.publish_cpu_s = round(time.thread_time() - cpu_pub, 3)
        ctl.wake_all()
        deadline = loop.time() + cfg.drain_s
        quiet_ns = int(min(1.0, cfg.drain_s) * 1e9)
        while loop.time() < deadline:
            if not ctl.inflight() and time.time_ns() - ctl.last_rx > quiet_ns:
                break
            await asyncio.sleep(0.05)

    async def _storm(self, ctl: FleetControl) -> str | None:
        cfg = self.plan.config
        assert self.storm is not None and cfg.storm is not None
        loop = ctl.loop
        before = set(ctl.online)
        drops_before = ctl.drops
        start, t_ns, perf = loop.time(), time.time_ns(), time.perf_counter()
        self.progress(f"fleet: storm: {cfg.storm} of the core with {len(before)} devices connected")
        error: str | None = None
        try:
            await loop.run_in_executor(None, self.storm)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.recorder.record(
            FLEET,
            f"storm:{cfg.storm}",
            (time.perf_counter() - perf) * 1000,
            0,
            error,
            {"t_ns": t_ns, "devices": len(before), "backoff": str(cfg.backoff)},
        )
        deadline = start + cfg.reconnect_timeout_s
        op_done = loop.time()
        while loop.time() < deadline:
            back = sum(1 for i in before if ctl.last_connect.get(i, 0.0) > start and i in ctl.online)
            if back >= len(before):
                break
            if ctl.drops == drops_before and loop.time() > op_done + QUIET_AFTER_STORM_S:
                break  # nobody was disconnected: a core that did not restart (reported, not waited for)
            await asyncio.sleep(0.05)
        back = sum(1 for i in before if ctl.last_connect.get(i, 0.0) > start)
        self.progress(
            f"fleet: {back} of {len(before)} devices reconnected {loop.time() - start:.1f} s after the storm"
        )
        ctl.pub_end = max(ctl.pub_end, loop.time())
        ctl.wake_all()
        return error

    async def _housekeeping(self, clients: list[DeviceClient]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            for c in clients:
                c.tick(now)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (a third of the CPU per message and a fraction of the
    memory per connection of the standard loop, measured in bench/bench_fleet.py), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, timeout: float = 10.0) -> None:
    """Cancel tasks still pending (only after an interrupted run) and let them and the transports they
    close finish on this loop, as ``asyncio.run`` does, instead of being destroyed with it."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
    loop.run_until_complete(asyncio.sleep(0))  # pending connection_lost callbacks


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


def run_plan(plan: FleetPlan, sinks: list[Sink], **kwargs: Any) -> EngineReport:
    """Convenience: run ``plan`` on a fresh event loop in this thread."""
    return FleetEngine(plan, sinks, **kwargs).run_sync()
