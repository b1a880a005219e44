"""The realism slice: devices on the real AWS IoT Device SDK v2 (awsiotsdk / awscrt) for discovery and MQTT.

The SDK runs its own native threads; its futures and callbacks are handed to the fleet's event loop, so
the device behaviour (``harness.fleet.device``) drives it exactly as it drives the bulk engine. The SDK's
own automatic reconnect is switched off by disconnecting on interruption: reconnects follow the device's
backoff policy like every other device's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from harness.fleet.device import ConnectError
from harness.fleet.plan import BrokerEndpoint, DeviceSpec, DiscoveryEndpoint


class SdkRuntime:
    """One awscrt event-loop group and bootstrap shared by the SDK slice (not one thread per device)."""

    def __init__(self, threads: int = 1) -> None:
        from awscrt import io

        self.elg = io.EventLoopGroup(threads)
        self.bootstrap = io.ClientBootstrap(self.elg, io.DefaultHostResolver(self.elg))

    def close(self) -> None:
        # awscrt frees its native threads when the last reference goes; drop ours
        self.bootstrap = None  # type: ignore[assignment]
        self.elg = None  # type: ignore[assignment]


class SdkMqttClient:
    """A device's client on the real SDK (see ``harness.fleet.device.DeviceClient``)."""

    engine = "sdk"

    def __init__(
        self,
        spec: DeviceSpec,
        loop: asyncio.AbstractEventLoop,
        runtime: SdkRuntime,
        *,
        keepalive: int,
        clean_session: bool,
        on_message: Callable[[str, bytes, int], None],
        on_closed: Callable[[str], None],
        discovery: DiscoveryEndpoint | None = None,
        broker: BrokerEndpoint | None = None,
    ) -> None:
        self.spec = spec
        self.loop = loop
        self.runtime = runtime
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.on_message = on_message
        self.on_closed = on_closed
        self.discovery = discovery
        self.endpoints: list[tuple[str, int]] = [(broker.host, broker.port)] if broker else []
        self.ca_pem = broker.ca_pem if broker else ""
        self._ep = 0
        self._conn: Any = None
        self._connected = False
        self._lock = threading.Lock()
        self.close_reason = ""

    @property
    def connected(self) -> bool:
        return self._connected

    def prepare(self) -> None:
        """The SDK loads credentials inside its own calls."""

    async def discover(self, timeout: float) -> int:
        from awscrt import io
        from awsiot import greengrass_discovery

        d = self.discovery
        assert d is not None
        opts = io.TlsContextOptions.create_client_with_mtls_from_path(self.spec.cert_path, self.spec.key_path)
        opts.override_default_trust_store_from_path(None, d.root_ca_path)
        sock = io.SocketOptions()
        sock.connect_timeout_ms = int(timeout * 1000)
        client = greengrass_discovery.DiscoveryClient(
            self.runtime.bootstrap, sock, io.ClientTlsContext(opts), "us-east-1", gg_server_name=d.host
        )
        client.port = d.port
        response = await asyncio.wait_for(asyncio.wrap_future(client.discover(self.spec.thing)), timeout)
        endpoints: list[tuple[str, int]] = []
        cas: list[str] = []
        for group in response.gg_groups:
            cas += group.certificate_authorities
            for core in group.cores:
                endpoints += [(c.host_address, int(c.port)) for c in core.connectivity]
        if not endpoints or not cas:
            raise ConnectionError("discovery answer without connectivity or CA")
        self.endpoints, self.ca_pem, self._ep = endpoints, "".join(cas), 0
        return sum(len(c) for c in cas)

    async def connect(self, timeout: float) -> None:
        from awsiot import mqtt_connection_builder

        if not self.endpoints:
            raise ConnectError("no broker endpoint (discovery returned no connectivity)")
        host, port = self.endpoints[self._ep % len(self.endpoints)]
        conn = mqtt_connection_builder.mtls_from_path(
            endpoint=host,
            port=port,
            cert_filepath=self.spec.cert_path,
            pri_key_filepath=self.spec.key_path,
            ca_bytes=self.ca_pem.encode(),
            client_bootstrap=self.runtime.bootstrap,
            client_id=self.spec.thing,
            clean_session=self.clean_session,
            keep_alive_secs=self.keepalive,
            on_connection_interrupted=self._interrupted,
        )
        try:
            await asyncio.wait_for(asyncio.wrap_future(conn.connect()), timeout)
        except Exception as exc:
            self._ep += 1
            try:
                conn.disconnect()
            except Exception:
                pass
            text = "timed out" if isinstance(exc, TimeoutError | asyncio.TimeoutError) else str(exc)
            raise ConnectError(f"SDK connect to {host}:{port} failed: {text}") from None
        with self._lock:
            self._conn = conn
            self._connected = True
        self.close_reason = ""

    def _interrupted(self, connection: Any, error: Any, **kwargs: Any) -> None:
        """awscrt thread: the connection dropped. Stop the SDK's own reconnect and tell the device."""
        with self._lock:
            if connection is not self._conn:
                return
            self._connected = False
            self._conn = None
        self.close_reason = f"connection interrupted: {error}"
        connection.disconnect()
        self.loop.call_soon_threadsafe(self.on_closed, self.close_reason)

    def _message(self, topic: str, payload: bytes, dup: bool, qos: Any, retain: bool, **kwargs: Any) -> None:
        self.loop.call_soon_threadsafe(self.on_message, topic, bytes(payload), int(qos))

    def _require(self) -> Any:
        conn = self._conn
        if conn is None or not self._connected:
            raise ConnectionError("not connected")
        return conn

    async def subscribe(self, topic_filter: str, qos: int, timeout: float) -> int:
        from awscrt import mqtt

        fut, _ = self._require().subscribe(topic=topic_filter, qos=mqtt.QoS(qos), callback=self._message)
        result = await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        granted = result.get("qos")
        return 0x80 if granted is None else int(granted)

    def publish(self, topic: str, data: bytes, qos: int) -> asyncio.Future[Any] | None:
        from awscrt import mqtt

        fut, _ = self._require().publish(topic=topic, payload=data, qos=mqtt.QoS(qos))
        if qos == 0:
            return None
        return asyncio.wrap_future(fut, loop=self.loop)

    async def disconnect(self, timeout: float) -> None:
        with self._lock:
            conn, self._conn, self._connected = self._conn, None, False
        if conn is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(conn.disconnect()), timeout)
        except Exception:
            pass

    def tick(self, now: float) -> None:
        """The SDK sends its own keep-alive pings."""

    def abort(self) -> None:
        with self._lock:
            conn, self._conn, self._connected = self._conn, None, False
        if conn is not None:
            conn.disconnect()
