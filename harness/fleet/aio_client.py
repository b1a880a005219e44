"""The bulk engine's client: MQTT 3.1.1 (``harness.fleet.codec``) over TLS on asyncio, a context per device.

Thousands of these share one event loop in one thread: an ``asyncio.Protocol`` per connection doing its own
TLS on memory BIOs, no task per connection, packets parsed by the sans-IO reader. Discovery is a plain
HTTPS GET on the same loop.
Security is what a real device has: the device's own certificate, the broker verified against the CA that
discovery returned (hostname checked), the discovery endpoint verified against the root CA.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from typing import Any

from harness.fleet import codec
from harness.fleet.device import ConnectError
from harness.fleet.plan import BrokerEndpoint, DeviceSpec, DiscoveryEndpoint

#: Above this many bytes waiting in the send buffer a QoS 0 publish is refused (the broker is not reading).
SEND_BUFFER_LIMIT = 1 << 20
ALPN = ["x-amzn-http-ca"]
#: Told at PUBACK (None) or when the connection drops first (the error).
AckCallback = Callable[[BaseException | None], None]


class _Connection(asyncio.Protocol):
    """One TCP connection of one device, with TLS done here on an ``ssl.SSLObject`` over memory BIOs.

    Why not ``create_connection(ssl=...)``: asyncio's TLS layer keeps a 256 KiB read buffer per connection
    (1.3 GB for 5,000 devices) and several Python layers per record; a device needs neither.
    """

    def __init__(self, client: AioMqttClient, ctx: ssl.SSLContext, server_hostname: str) -> None:
        self.client = client
        self.reader = codec.Reader()
        self.transport: asyncio.Transport | None = None
        loop = client.loop
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self._in, self._out, server_hostname=server_hostname)
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.connack: asyncio.Future[codec.Connack] = loop.create_future()
        self.subacks: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        #: QoS 1 publishes awaiting PUBACK: packet id -> called with None (acknowledged) or the error.
        self.inflight: dict[int, AckCallback] = {}
        self.closed = False
        self.reason = ""
        self.last_tx = self.last_rx = loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's TCP transport implements asyncio.Transport without subclassing it)
        self.transport = transport  # type: ignore[assignment]
        self._handshake()

    def _flush(self) -> None:
        data = self._out.read()
        if data and self.transport is not None:
            self.transport.write(data)

    def _handshake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:  # bad certificate, wrong CA or host name, peer hung up
            self._flush()
            self.reason = f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}"
            if not self.handshake.done():
                self.handshake.set_exception(ssl.SSLError(self.reason))
            assert self.transport is not None
            self.transport.abort()
            return
        self._flush()
        if not self.handshake.done():
            self.handshake.set_result(None)

    def send(self, data: bytes) -> None:
        if self.transport is None or self.closed:
            raise ConnectionError("not connected")
        self.tls.write(data)
        self._flush()
        self.last_tx = self.client.loop.time()

    def pending_bytes(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        if not self.handshake.done():
            self._handshake()
            if not self.handshake.done() or self.handshake.exception() is not None:
                return
        plain: list[bytes] = []
        try:
            while True:
                chunk = self.tls.read(65536)
                if not chunk:
                    break
                plain.append(chunk)
                # stop when nothing is left rather than on SSLWantReadError: one exception per read saved
                if not self._in.pending and not self.tls.pending():
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.reason = "the broker closed the TLS session"
        except ssl.SSLError as exc:
            self.reason = f"TLS error: {exc.reason or exc}"
            assert self.transport is not None
            self.transport.abort()
            return
        self._flush()  # TLS may have something to say back (alerts, session tickets)
        if plain:
            self._mqtt(b"".join(plain) if len(plain) > 1 else plain[0])

    def _puback(self, packet_id: int) -> None:
        done = self.inflight.pop(packet_id, None)
        if done is not None:
            done(None)

    def _mqtt(self, data: bytes) -> None:
        self.last_rx = self.client.loop.time()
        try:
            packets = self.reader.feed(data, self._puback)
        except codec.ProtocolError as exc:
            self.reason = f"protocol error from the broker: {exc}"
            assert self.transport is not None
            self.transport.abort()
            return
        acks: list[bytes] = []
        for p in packets:
            if type(p) is codec.Publish:
                if p.qos == 1:
                    acks.append(codec.puback(p.packet_id))
                self.client.on_message(p.topic, p.payload, p.qos)
            elif type(p) is codec.Ack:
                if p.kind == codec.PUBACK:  # only without the fast path (never here; kept for clarity)
                    self._puback(p.packet_id)
                else:
                    sub = self.subacks.pop(p.packet_id, None)
                    if sub is not None and not sub.done():
                        sub.set_result(p.granted)
            elif type(p) is codec.Connack and not self.connack.done():
                self.connack.set_result(p)
        if acks and not self.closed:  # every PUBACK this read owes in one TLS record and one write
            self.send(b"".join(acks))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.reason:
            self.reason = f"connection lost: {exc}" if exc else "connection closed by the broker"
        error = ConnectionError(f"no answer from the broker: {self.reason}")
        pending: list[asyncio.Future[Any]] = [self.handshake, self.connack, *self.subacks.values()]
        for fut in pending:
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: nobody may be waiting any more
        self.subacks.clear()
        unacked = list(self.inflight.values())
        self.inflight.clear()
        for done in unacked:
            done(error)
        self.client._lost(self)


class AioMqttClient:
    """A device's MQTT client on the asyncio engine (see ``harness.fleet.device.DeviceClient``)."""

    engine = "asyncio"

    def __init__(
        self,
        spec: DeviceSpec,
        loop: asyncio.AbstractEventLoop,
        *,
        keepalive: int,
        clean_session: bool,
        on_message: Callable[[str, bytes, int], None],
        on_closed: Callable[[str], None],
        discovery: DiscoveryEndpoint | None = None,
        discovery_ca: str | None = None,
        broker: BrokerEndpoint | None = None,
    ) -> None:
        self.spec = spec
        self.loop = loop
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.on_message = on_message
        self.on_closed = on_closed
        self.discovery = discovery
        self.discovery_ca = discovery_ca
        self.endpoints: list[tuple[str, int]] = [(broker.host, broker.port)] if broker else []
        self.ca_pem = broker.ca_pem if broker else ""
        self._ep = 0
        self._ctx: ssl.SSLContext | None = None
        self._disc_ctx: ssl.SSLContext | None = None
        self._discovered = False
        self._conn: _Connection | None = None
        self._pid = 0
        self.close_reason = ""

    # -- discovery --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the device's credentials into TLS contexts (boot work, kept out of timed operations)."""
        if self.discovery is not None and not self._discovered and self._disc_ctx is None:
            assert self.discovery_ca is not None
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_verify_locations(cadata=self.discovery_ca)
            ctx.load_cert_chain(self.spec.cert_path, self.spec.key_path)
            ctx.set_alpn_protocols(ALPN)
            self._disc_ctx = ctx
        if self.ca_pem and self._ctx is None:
            self._context()

    async def discover(self, timeout: float) -> int:
        d = self.discovery
        assert d is not None
        self.prepare()
        ctx = self._disc_ctx
        assert ctx is not None
        body = await asyncio.wait_for(self._get(d, ctx), timeout)
        status = body.partition(b" ")[2].partition(b" ")[0]
        content = body.partition(b"\r\n\r\n")[2]
        if status != b"200":
            raise ConnectionError(
                f"discovery answered {status.decode(errors='replace') or 'nothing'}: "
                f"{content[:200].decode(errors='replace')}"
            )
        doc = json.loads(content)
        self.endpoints, self.ca_pem = _connectivity(doc)
        self._ctx = self._disc_ctx = None
        self._ep = 0
        self._discovered = True
        return len(body)

    async def _get(self, d: DiscoveryEndpoint, ctx: ssl.SSLContext) -> bytes:
        reader, writer = await asyncio.open_connection(d.host, d.port, ssl=ctx, server_hostname=d.host)
        try:
            writer.write(
                f"GET /greengrass/discover/thing/{self.spec.thing} HTTP/1.1\r\nHost: {d.host}:{d.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            return await reader.read(-1)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    # -- MQTT -------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        c = self._conn
        return c is not None and not c.closed and c.connack.done() and not c.connack.exception()

    def _context(self) -> ssl.SSLContext:
        if self._ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_verify_locations(cadata=self.ca_pem)
            ctx.load_cert_chain(self.spec.cert_path, self.spec.key_path)
            self._ctx = ctx
        return self._ctx

    async def connect(self, timeout: float) -> None:
        if not self.endpoints:
            raise ConnectError("no broker endpoint (discovery returned no connectivity)")
        host, port = self.endpoints[self._ep % len(self.endpoints)]
        conn = _Connection(self, self._context(), host)
        deadline = self.loop.time() + timeout
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: conn, host, port), timeout)
            await asyncio.wait_for(asyncio.shield(conn.handshake), max(0.01, deadline - self.loop.time()))
        except TimeoutError:
            self._drop(conn)
            self._ep += 1  # like the SDK sample: the next connectivity entry next time
            raise ConnectError(f"TCP/TLS to {host}:{port} not established within {timeout:g} s") from None
        except ssl.SSLError as exc:
            self._drop(conn)
            self._ep += 1
            raise ConnectError(f"{host}:{port}: {exc.reason or exc}") from None
        except OSError as exc:
            self._drop(conn)
            self._ep += 1
            raise ConnectError(f"TCP connect to {host}:{port} failed: {exc.strerror or exc}") from None
        self._conn = conn
        self.close_reason = ""
        try:
            conn.send(codec.connect(self.spec.thing, self.keepalive, self.clean_session))
            ack = await asyncio.wait_for(asyncio.shield(conn.connack), max(0.01, deadline - self.loop.time()))
        except TimeoutError:
            self._drop(conn)
            raise ConnectError(f"no CONNACK from {host}:{port} within {timeout:g} s") from None
        except ConnectionError as exc:
            self._drop(conn)
            raise ConnectError(f"{host}:{port}: {conn.reason or exc} (no CONNACK)") from None
        if ack.code != 0:
            self._drop(conn)
            raise ConnectError(f"CONNACK refused by {host}:{port}: {ack.reason} (code {ack.code})")

    def _drop(self, conn: _Connection) -> None:
        if conn.transport is not None and not conn.closed:
            conn.transport.abort()
        if self._conn is conn:
            self._conn = None

    def _next_pid(self, used: dict[int, Any]) -> int:
        pid = self._pid % 65535 + 1
        if pid not in used:  # the usual case: ids are handed out in order and acked long before reuse
            self._pid = pid
            return pid
        for _ in range(65535):
            self._pid = self._pid % 65535 + 1
            if self._pid not in used:
                return self._pid
        raise BufferError("no free MQTT packet id (65535 messages in flight)")

    async def subscribe(self, topic_filter: str, qos: int, timeout: float) -> int:
        conn = self._require()
        pid = self._next_pid(conn.subacks)
        fut: asyncio.Future[tuple[int, ...]] = self.loop.create_future()
        conn.subacks[pid] = fut
        conn.send(codec.subscribe(pid, [(topic_filter, qos)]))
        granted = await asyncio.wait_for(fut, timeout)
        return granted[0] if granted else codec.SUBACK_FAILURE

    def publish(self, topic: str, data: bytes, qos: int) -> asyncio.Future[None] | None:
        if qos == 0:
            self.publish_with(codec.PublishEncoder(topic, 0), data, None)
            return None
        fut: asyncio.Future[None] = self.loop.create_future()

        def done(error: BaseException | None) -> None:
            if fut.done():
                return
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)
                fut.exception()  # retrieved: the caller may have stopped waiting

        self.publish_with(codec.PublishEncoder(topic, qos), data, done)
        return fut

    def publish_with(self, encoder: codec.PublishEncoder, data: bytes, done: AckCallback | None) -> None:
        """``publish`` without a future: the device's hot path. ``encoder`` holds the topic and QoS;
        for QoS 1 ``done`` is called at PUBACK with None, or with the error when the connection drops."""
        conn = self._conn
        if conn is None or conn.closed or conn.transport is None:
            raise ConnectionError("not connected")
        if conn.transport.get_write_buffer_size() > SEND_BUFFER_LIMIT:
            raise BufferError(f"send buffer above {SEND_BUFFER_LIMIT} bytes: the broker is not reading")
        if not encoder.qos:
            conn.send(encoder(data))
            return
        assert done is not None
        pid = self._next_pid(conn.inflight)
        conn.inflight[pid] = done
        conn.send(encoder(data, pid))

    def _require(self) -> _Connection:
        conn = self._conn
        if conn is None or conn.closed:
            raise ConnectionError("not connected")
        return conn

    def _lost(self, conn: _Connection) -> None:
        if conn is self._conn:
            self.close_reason = conn.reason
            if conn.connack.done():
                self.on_closed(conn.reason)

    async def disconnect(self, timeout: float) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if conn.closed or conn.transport is None:
            return
        conn.reason = "disconnected by the device"
        try:
            conn.send(codec.DISCONNECT_BYTES)
        except ConnectionError:
            pass
        conn.transport.close()
        deadline = self.loop.time() + timeout
        while not conn.closed and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        if not conn.closed:
            conn.transport.abort()

    def tick(self, now: float) -> None:
        conn = self._conn
        if conn is None or conn.closed or not conn.connack.done():
            return
        if now - conn.last_rx > 1.5 * self.keepalive:
            conn.reason = f"keep-alive: nothing from the broker for {1.5 * self.keepalive:g} s"
            assert conn.transport is not None
            conn.transport.abort()
        elif now - conn.last_tx >= 0.75 * self.keepalive:
            conn.send(codec.PINGREQ_BYTES)

    def abort(self) -> None:
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.closed:
            conn.reason = "aborted at the end of the run"
            conn.transport.abort()


def _connectivity(doc: Any) -> tuple[list[tuple[str, int]], str]:
    """Every connectivity entry in order (group -> core -> entry, as the SDK sample tries them) and the CA."""
    endpoints: list[tuple[str, int]] = []
    cas: list[str] = []
    for group in doc.get("GGGroups", []):
        cas += group.get("CAs", [])
        for core in group.get("Cores", []):
            for c in core.get("Connectivity", []):
                endpoints.append((str(c["HostAddress"]), int(c["PortNumber"])))
    if not endpoints or not cas:
        raise ConnectionError(f"discovery answer without connectivity or CA: {json.dumps(doc)[:200]}")
    return endpoints, "".join(cas)
