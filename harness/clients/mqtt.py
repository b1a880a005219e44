"""A client device speaking MQTT 3.1.1 over mutual TLS with paho-mqtt, with every wait bounded.

Scenarios need to see what a broker did at the protocol level (CONNACK codes, SUBACK 0x80, disconnects,
which messages arrived), so this wraps paho's callbacks into queues and timed waits instead of hiding them.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

DEFAULT_TIMEOUT = 20.0


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    at: float


@dataclass
class Credentials:
    """What a device presents: certificate and key (None for a device without one) and the CA it trusts."""

    ca_pem: str
    cert_path: Path | None = None
    key_path: Path | None = None


@dataclass
class ConnectResult:
    connected: bool
    reason: str
    error: str = ""


@dataclass
class MqttDevice:
    """One MQTT client device."""

    client_id: str
    creds: Credentials
    keepalive: int = 30
    clean_session: bool = True
    messages: queue.Queue[Received] = field(default_factory=queue.Queue)
    disconnects: queue.Queue[str] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=self.clean_session,
            protocol=paho.MQTTv311,
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cadata=self.creds.ca_pem)
        if self.creds.cert_path is not None and self.creds.key_path is not None:
            ctx.load_cert_chain(str(self.creds.cert_path), str(self.creds.key_path))
        self._client.tls_set_context(ctx)
        self._connack: queue.Queue[str] = queue.Queue()
        self._subacks: dict[int, queue.Queue[list[int]]] = {}
        self._lock = threading.Lock()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._looping = False
        self._client.reconnect_delay_set(min_delay=1, max_delay=4)

    # paho callbacks (run in paho's network thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self._connack.put(str(rc))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.disconnects.put(str(rc))

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.messages.put(
            Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), time.monotonic())
        )

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        with self._lock:
            q = self._subacks.setdefault(mid, queue.Queue())
        q.put([int(rc.value) for rc in rcs])

    def connect(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> ConnectResult:
        """Connect and wait for CONNACK; a refused handshake or a dropped connection is a failed result."""
        try:
            self._client.connect(host, port, keepalive=self.keepalive)
        except (OSError, ssl.SSLError) as exc:
            return ConnectResult(False, "tls or tcp error", f"{type(exc).__name__}: {exc}")
        self._client.loop_start()
        self._looping = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reason = self._connack.get(timeout=0.1)
                return ConnectResult(reason == "Success", reason)
            except queue.Empty:
                pass
            try:
                dropped = self.disconnects.get_nowait()
                return ConnectResult(False, "connection closed before CONNACK", dropped)
            except queue.Empty:
                pass
        return ConnectResult(False, "no CONNACK", f"none within {timeout:g} s")

    def wait_connected(self, timeout: float = DEFAULT_TIMEOUT) -> ConnectResult:
        """Wait for the next CONNACK: paho reconnects by itself (1-4 s backoff) after a disconnect."""
        try:
            reason = self._connack.get(timeout=timeout)
        except queue.Empty:
            return ConnectResult(False, "no CONNACK", f"none within {timeout:g} s")
        return ConnectResult(reason == "Success", reason)

    def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Subscribe and return the granted QoS from the SUBACK (0x80 = refused)."""
        rc, mid = self._client.subscribe(topic_filter, qos)
        if rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"{self.client_id}: subscribe {topic_filter!r} not sent (paho rc {rc})")
        with self._lock:
            q = self._subacks.setdefault(int(mid or 0), queue.Queue())
        try:
            return q.get(timeout=timeout)[0]
        except queue.Empty:
            raise TimeoutError(
                f"{self.client_id}: no SUBACK for {topic_filter!r} within {timeout:g} s"
            ) from None

    def publish(self, topic: str, payload: bytes, qos: int = 0, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Publish; for QoS 1 wait for the PUBACK. False when the client could not send or got no ack."""
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        if qos == 0:
            return True
        try:
            info.wait_for_publish(timeout=timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def collect(self, count: int, timeout: float) -> list[Received]:
        """Up to ``count`` messages, waiting at most ``timeout`` seconds in all."""
        out: list[Received] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.messages.get(timeout=min(left, 0.2)))
            except queue.Empty:
                continue
        return out

    def wait_disconnect(self, timeout: float) -> str | None:
        try:
            return self.disconnects.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def is_connected(self) -> bool:
        return bool(self._client.is_connected())

    def close(self) -> None:
        try:
            self._client.disconnect()
        finally:
            if self._looping:
                self._client.loop_stop()
                self._looping = False

    @staticmethod
    def _drain(q: queue.Queue[Any]) -> None:
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                return
