"""The AWS IoT Device SDK v2 (awsiotsdk) as a client device uses it: discovery, then MQTT to the core.

Follows the SDK's basic-discovery sample: try each group -> core -> connectivity entry in order and connect
with the group CA, ``client_id = thingName``, ``clean_session=False``, keep-alive 30 s. The only changes for
the offline cloud are the discovery host, port and trust store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awscrt import io, mqtt
from awsiot import greengrass_discovery, mqtt_connection_builder

DEFAULT_TIMEOUT = 20.0


@dataclass
class SdkDevice:
    thing: str
    cert_path: Path
    key_path: Path


def _bootstrap() -> io.ClientBootstrap:
    elg = io.EventLoopGroup(1)
    return io.ClientBootstrap(elg, io.DefaultHostResolver(elg))


def discover(
    device: SdkDevice, root_ca: Path, port: int, host: str = "localhost", timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """``DiscoveryClient.discover`` against the offline endpoint; returns the SDK's DiscoverResponse."""
    opts = io.TlsContextOptions.create_client_with_mtls_from_path(str(device.cert_path), str(device.key_path))
    opts.override_default_trust_store_from_path(None, str(root_ca))
    sock = io.SocketOptions()
    sock.connect_timeout_ms = int(timeout * 1000)
    client = greengrass_discovery.DiscoveryClient(
        _bootstrap(), sock, io.ClientTlsContext(opts), "us-east-1", gg_server_name=host
    )
    client.port = port
    return client.discover(device.thing).result(timeout=timeout)


def connect_from_discovery(
    device: SdkDevice, response: Any, timeout: float = DEFAULT_TIMEOUT
) -> tuple[mqtt.Connection, tuple[str, int]]:
    """Connect as the SDK sample does; returns the connection and the (host, port) that worked."""
    errors: list[str] = []
    for group in response.gg_groups:
        ca = "".join(group.certificate_authorities).encode()
        for core in group.cores:
            for info in core.connectivity:
                conn = mqtt_connection_builder.mtls_from_path(
                    endpoint=info.host_address,
                    port=info.port,
                    cert_filepath=str(device.cert_path),
                    pri_key_filepath=str(device.key_path),
                    ca_bytes=ca,
                    client_bootstrap=_bootstrap(),
                    client_id=device.thing,
                    clean_session=False,
                    keep_alive_secs=30,
                )
                try:
                    conn.connect().result(timeout=timeout)
                    return conn, (info.host_address, info.port)
                except Exception as exc:  # the sample moves on to the next entry
                    errors.append(f"{info.host_address}:{info.port}: {type(exc).__name__}: {exc}")
    raise ConnectionError("no connectivity entry accepted the connection: " + "; ".join(errors))


def round_trip(
    conn: mqtt.Connection, topic_filter: str, topic: str, payload: bytes, timeout: float = DEFAULT_TIMEOUT
) -> bytes:
    """Subscribe to ``topic_filter``, publish ``payload`` on ``topic`` at QoS 1 and return what came back."""
    got: list[bytes] = []
    arrived = threading.Event()

    def on_message(topic: str, payload: bytes, **kwargs: Any) -> None:
        got.append(payload)
        arrived.set()

    sub, _ = conn.subscribe(topic=topic_filter, qos=mqtt.QoS.AT_LEAST_ONCE, callback=on_message)
    granted = sub.result(timeout=timeout)
    if granted.get("qos") is None:
        raise ConnectionError(f"subscription to {topic_filter} refused")
    pub, _ = conn.publish(topic=topic, payload=payload, qos=mqtt.QoS.AT_LEAST_ONCE)
    pub.result(timeout=timeout)
    if not arrived.wait(timeout):
        raise TimeoutError(f"the message published on {topic} did not come back within {timeout:g} s")
    return got[0]


def disconnect(conn: mqtt.Connection, timeout: float = DEFAULT_TIMEOUT) -> None:
    conn.disconnect().result(timeout=timeout)
