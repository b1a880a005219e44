"""What a simulated client device does, written once for every MQTT client that can run it.

Discover the core, connect with mutual TLS (retrying under its backoff policy), subscribe if it is a
subscriber, publish telemetry on a fixed schedule, reconnect after a drop, disconnect at the end. Every
operation is timed here, around the client call, so a connect measured on the bulk asyncio engine and one
measured on the real SDK mean the same thing. Clients only move bytes (``DeviceClient``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from harness.fleet import payload as telemetry
from harness.fleet.codec import SUBACK_FAILURE, PublishEncoder
from harness.fleet.plan import DeviceSpec, FleetConfig
from harness.fleet.sinks import Recorder

if TYPE_CHECKING:
    from harness.fleet.engine import FleetControl

MQTT = "MQTT"
HTTPS = "HTTPS"
#: A connection that lasted this long is retried at once when it drops; a shorter one backs off first.
STABLE_S = 1.0
MessageHandler = Callable[[str, bytes, int], None]
ClosedHandler = Callable[[str], None]


class ConnectError(Exception):
    """A connection attempt failed; the message says at which step (TCP, TLS, CONNACK code, timeout)."""


class DeviceClient(Protocol):
    """The transport a device runs on: the bulk asyncio engine or the real SDK."""

    engine: str

    @property
    def connected(self) -> bool: ...

    def prepare(self) -> None:
        """Load credentials (a device's boot work); called before each timed step, cheap once done."""

    async def discover(self, timeout: float) -> int:
        """Ask the discovery endpoint where the core is; returns the response size. Raises on failure."""

    async def connect(self, timeout: float) -> None:
        """TCP + TLS + CONNECT/CONNACK; raises ``ConnectError``."""

    async def subscribe(self, topic_filter: str, qos: int, timeout: float) -> int:
        """Returns the granted QoS, or 0x80 when refused."""

    def publish(self, topic: str, data: bytes, qos: int) -> Awaitable[None] | None:
        """Send; for QoS 1 an awaitable done at PUBACK. None when the message was only written.

        Raises ``BufferError`` when the message could not even be queued (send buffer full).
        """

    async def disconnect(self, timeout: float) -> None:
        """DISCONNECT and close; always leaves the client closed."""

    def tick(self, now: float) -> None:
        """Housekeeping once a second: keep-alive pings, dead-connection detection."""

    def abort(self) -> None:
        """Drop the connection at once (end of a run that overran its time bound)."""


class SimDevice:
    """One device's behaviour; ``run()`` returns when the fleet stops."""

    def __init__(self, spec: DeviceSpec, config: FleetConfig, ctl: FleetControl, rec: Recorder) -> None:
        self.spec = spec
        self.config = config
        self.ctl = ctl
        self.rec = rec
        self.backoff = config.backoff.start(spec.seed)
        self.client: DeviceClient | None = None
        self.seq = 0
        self.inflight = 0
        self.attempt = 0
        self._next_slot = 0
        self._wake: asyncio.Future[None] | None = None
        self._thing = spec.thing
        self._told_ready = False
        #: Telemetry is sent by ``_pump`` from the fleet's one publish timer (``FleetControl.book``), not by
        #: a timer and a coroutine step per message: these say whether a session runs and a slot is booked.
        self._in_session = False
        self._booked = False
        self._base = 0.0
        self._encode = telemetry.Encoder(spec.thing, config.payload_bytes)
        self._encoder = PublishEncoder(spec.topic, config.qos)

    # -- callbacks from the client and the controller (event loop thread) --------------------------
    def wake(self) -> None:
        """Interrupt a nap: the connection dropped, an ack arrived, or the fleet changed phase."""
        fut = self._wake
        if fut is not None and not fut.done():
            fut.set_result(None)

    def on_message(self, topic: str, data: bytes, qos: int) -> None:
        now_ns = time.time_ns()
        self.ctl.last_rx = now_ns
        t = telemetry.decode(data)
        if t is None:
            self.rec.record(
                MQTT,
                "receive",
                0.0,
                len(data),
                "not fleet telemetry",
                {"device": self._thing, "topic": topic, "qos": qos},
            )
            return
        self.rec.record(
            MQTT,
            "receive",
            (now_ns - t.sent_ns) / 1e6,
            len(data),
            None,
            {
                "device": self._thing,
                "from": t.device,
                "seq": t.seq,
                "sent_ns": t.sent_ns,
                "qos": qos,
                "topic": topic,
            },
        )

    def on_closed(self, reason: str) -> None:
        self.wake()

    def _ready(self) -> None:
        """Tell the fleet this device's first attempts are over (once)."""
        if not self._told_ready:
            self._told_ready = True
            self.ctl.ready(self)

    # -- behaviour --------------------------------------------------------------------------------
    async def _nap(self, until: float) -> None:
        """Sleep until loop time ``until`` or until woken; cheap (one future, one timer)."""
        loop = self.ctl.loop
        if until <= loop.time():
            return
        fut: asyncio.Future[None] = loop.create_future()
        self._wake = fut
        handle = loop.call_at(until, _resolve, fut) if until != math.inf else None
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._wake = None

    async def _backoff_nap(self) -> None:
        delay = self.backoff.next_delay()
        until = self.ctl.loop.time() + delay
        # a device never retries before its policy allows, however often it is woken
        while not self.ctl.stopping and self.ctl.loop.time() < until:
            await self._nap(until)

    async def run(self, client: DeviceClient) -> None:
        self.client = client
        ctl, cfg = self.ctl, self.config
        await self._nap(ctl.t0 + self.spec.connect_at_s)
        first = True
        try:
            if cfg.discover and not await self._discover(client):
                return
            while not ctl.stopping:
                if not await self._connect(client):
                    await self._backoff_nap()
                    continue
                self.backoff.reset()
                ctl.connected(self)
                if self.spec.subscribe is not None and not await self._subscribe(client):
                    ctl.disconnected(self)
                    await client.disconnect(5.0)
                    await self._backoff_nap()
                    continue
                if first:
                    first = False
                    self._ready()
                up_since = ctl.loop.time()
                reason = await self._session(client)
                ctl.disconnected(self)
                if reason is None:
                    break
                self.rec.record(
                    MQTT,
                    "disconnect",
                    0.0,
                    0,
                    reason,
                    {"device": self._thing, "t_ns": time.time_ns(), "engine": client.engine},
                )
                # A connection that had lasted is retried at once (as the fleet model and the backoff
                # article assume); one dropped right after connecting backs off first, so a core that
                # accepts and drops at once cannot pull a device into a tight loop.
                if ctl.loop.time() - up_since < STABLE_S:
                    await self._backoff_nap()
        finally:
            if first:
                self._ready()  # never connected: do not hold the fleet's telemetry start
            if client.connected:
                await client.disconnect(5.0)

    async def _discover(self, client: DeviceClient) -> bool:
        ctl = self.ctl
        while not ctl.stopping:
            client.prepare()
            start = time.perf_counter()
            try:
                size = await client.discover(self.config.connect_timeout_s)
            except Exception as exc:
                self.rec.record(
                    HTTPS,
                    "discover",
                    (time.perf_counter() - start) * 1000,
                    0,
                    _why(exc),
                    {"device": self._thing, "engine": client.engine, "t_ns": time.time_ns()},
                )
                # A device that cannot find the core (a revoked certificate) keeps trying, but must not
                # hold back the fleet's telemetry phase until the ramp's time limit.
                self._ready()
                await self._backoff_nap()
                continue
            self.rec.record(
                HTTPS,
                "discover",
                (time.perf_counter() - start) * 1000,
                size,
                None,
                {"device": self._thing, "engine": client.engine, "t_ns": time.time_ns()},
            )
            return True
        return False

    async def _connect(self, client: DeviceClient) -> bool:
        self.attempt += 1
        client.prepare()
        start = time.perf_counter()
        error: str | None = None
        try:
            await client.connect(self.config.connect_timeout_s)
        except Exception as exc:
            error = _why(exc)
        self.rec.record(
            MQTT,
            "connect",
            (time.perf_counter() - start) * 1000,
            0,
            error,
            {"device": self._thing, "engine": client.engine, "attempt": self.attempt, "t_ns": time.time_ns()},
        )
        return error is None

    async def _subscribe(self, client: DeviceClient) -> bool:
        assert self.spec.subscribe is not None
        qos = self.config.qos
        start = time.perf_counter()
        error: str | None = None
        granted = SUBACK_FAILURE
        refused = False
        try:
            granted = await client.subscribe(self.spec.subscribe, qos, self.config.connect_timeout_s)
            if granted == SUBACK_FAILURE:
                error = f"subscription to {self.spec.subscribe} refused (SUBACK 0x80)"
                refused = True
        except Exception as exc:
            error = _why(exc)
        self.rec.record(
            MQTT,
            "subscribe",
            (time.perf_counter() - start) * 1000,
            0,
            error,
            {
                "device": self._thing,
                "filter": self.spec.subscribe,
                "qos": qos,
                "granted": granted,
                "t_ns": time.time_ns(),
            },
        )
        # a refusal is an answer (the device carries on publishing); a timeout or a drop means reconnect
        return error is None or refused

    async def _session(self, client: DeviceClient) -> str | None:
        """Publish on schedule while connected. Returns the drop reason, or None when the fleet stops.

        The coroutine only follows the phases; the messages themselves go out from ``_pump``, called by
        the fleet's publish timer at each due slot and by PUBACKs when the in-flight window was full."""
        ctl, cfg = self.ctl, self.config
        rate = cfg.rate
        synced = False
        connected_at = ctl.loop.time()
        try:
            while True:
                if ctl.stopping:
                    await self._wait_acks(client)
                    return None
                if not client.connected:
                    return getattr(client, "close_reason", "") or "connection lost"
                if ctl.pub_start is None or rate <= 0 or ctl.publish_over:
                    await self._nap(math.inf)
                    continue
                if not synced:  # slots missed while disconnected are skipped, never sent in a burst
                    self._base = base = ctl.pub_start + self.spec.phase_s
                    # (counted from this connection's start: a device connected before telemetry began
                    # and woken a little late still sends its first slot)
                    self._next_slot = max(self._next_slot, math.ceil((connected_at - base) * rate - 1e-9))
                    synced = True
                self._in_session = True
                if not self._booked:
                    self._pump(ctl.loop.time())
                # woken when the connection drops or the fleet changes phase (stop, storm, end of telemetry)
                await self._nap(math.inf)
        finally:
            self._in_session = False

    def _pump(self, horizon: float) -> None:
        """Send every slot due by loop time ``horizon`` (the in-flight window allowing), then book the next
        slot with the fleet's timer. Slots held back by a full window go out as PUBACKs free it, late but
        never skipped, as before; nothing is booked past the end of telemetry."""
        ctl = self.ctl
        client = self.client
        if not self._in_session or ctl.stopping or ctl.publish_over or client is None or not client.connected:
            return  # the session coroutine is woken for all of these and decides
        rate = self.config.rate
        limit = self.config.max_inflight
        end = ctl.pub_end
        base = self._base
        slot = self._next_slot
        due = base + slot / rate
        while due <= horizon:
            if due >= end or self.inflight >= limit:
                return
            self._publish(client)
            slot += 1
            self._next_slot = slot
            due = base + slot / rate
        if due < end:
            self._booked = True
            ctl.book(self, due)

    def _publish(self, client: DeviceClient) -> None:
        qos = self.config.qos
        seq = self.seq
        sent_ns = time.time_ns()
        data = self._encode(seq, sent_ns)
        ctx = {"device": self._thing, "seq": seq, "sent_ns": sent_ns, "qos": qos, "topic": self.spec.topic}
        start = time.perf_counter()
        publish_with = getattr(client, "publish_with", None)
        try:
            if publish_with is not None:  # the bulk engine: no future, no task hop per message
                ack = None
                publish_with(self._encoder, data, partial(self._done, start, len(data), ctx) if qos else None)
            else:
                ack = client.publish(self.spec.topic, data, qos)
        except (BufferError, ConnectionError) as exc:  # not sent: no sequence number used, expected nowhere
            self.rec.record(MQTT, "publish", 0.0, len(data), str(exc), {**ctx, "sent": False})
            return
        self.seq += 1
        if qos and publish_with is not None:
            self.inflight += 1
            return
        if ack is None:
            self.rec.record(MQTT, "publish", (time.perf_counter() - start) * 1000, len(data), None, ctx)
            return
        self.inflight += 1
        fut = asyncio.ensure_future(ack)
        fut.add_done_callback(lambda f: self._acked(f, start, len(data), ctx))

    def _acked(self, fut: asyncio.Future[None], start: float, size: int, ctx: dict[str, object]) -> None:
        error: BaseException | None = None
        if fut.cancelled():
            error = asyncio.CancelledError("cancelled before PUBACK")
        elif fut.exception() is not None:
            error = fut.exception()
        self._done(start, size, ctx, error)

    def _done(self, start: float, size: int, ctx: dict[str, object], error: BaseException | None) -> None:
        """A QoS 1 publish ended: PUBACK (``error`` None) or the connection dropped first."""
        self.inflight -= 1
        why = (
            None
            if error is None
            else ("cancelled before PUBACK" if isinstance(error, asyncio.CancelledError) else _why(error))
        )
        self.rec.record(MQTT, "publish", (time.perf_counter() - start) * 1000, size, why, ctx)
        if self.ctl.stopping:
            self.wake()  # ``_wait_acks`` counts them down
        elif not self._booked and self._in_session:
            self._pump(self.ctl.loop.time())  # the window was full: the held-back slots go now

    async def _wait_acks(self, client: DeviceClient) -> None:
        deadline = self.ctl.loop.time() + self.config.drain_s
        while self.inflight and client.connected and self.ctl.loop.time() < deadline:
            await self._nap(deadline)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _why(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) and not text:
        return "timed out"
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ConnectError) else text
