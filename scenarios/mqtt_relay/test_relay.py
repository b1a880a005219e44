"""MQTT relay scenarios M1-M6: the core as a mutual-TLS MQTT relay between client devices.

Every check talks MQTT (paho-mqtt, a real client) or raw TCP/TLS to the core's advertised endpoint and
drives the core only through the Core interface.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from collections.abc import Iterator

import pytest
from cryptography import x509

from harness.clients.mqtt import MqttDevice
from harness.pytest_core import CoreUnderTest, core_log_tail

MAX_PAYLOAD = 128 * 1024
QUIET_S = 3.0  # how long a message that must not arrive is waited for, after a marker that must


class Devices:
    """Connected devices of one test, all closed at its end."""

    def __init__(self, cut: CoreUnderTest) -> None:
        self.cut = cut
        self.open: list[MqttDevice] = []

    def connect(self, thing: str, client_id: str | None = None, *, with_cert: bool = True) -> MqttDevice:
        dev = MqttDevice(client_id or thing, self.cut.creds(thing, with_cert=with_cert))
        self.open.append(dev)
        ep = self.cut.core.endpoints()[0]
        res = dev.connect(ep.host, ep.port)
        assert res.connected, (
            f"{thing} (client id {client_id or thing}) could not connect: {res}\n"
            f"{core_log_tail(self.cut.core)}"
        )
        return dev

    def try_connect(self, thing: str, client_id: str | None = None, *, with_cert: bool = True) -> object:
        dev = MqttDevice(client_id or thing, self.cut.creds(thing, with_cert=with_cert))
        self.open.append(dev)
        ep = self.cut.core.endpoints()[0]
        return dev.connect(ep.host, ep.port, timeout=10)

    def close(self) -> None:
        for d in self.open:
            d.close()


@pytest.fixture
def devices(core_under_test: CoreUnderTest) -> Iterator[Devices]:
    d = Devices(core_under_test)
    try:
        yield d
    finally:
        d.close()


def _marker() -> bytes:
    return f"marker-{uuid.uuid4().hex}".encode()


def _delivered(observer: MqttDevice, marker: bytes) -> list[bytes]:
    """Payloads the observer got up to and including ``marker`` (which must arrive)."""
    got: list[bytes] = []
    for msg in observer.collect(1000, QUIET_S + 10):
        got.append(msg.payload)
        if msg.payload == marker:
            return got
    raise AssertionError(f"the marker message never reached the observer (got {len(got)} messages)")


@pytest.mark.requirement(
    "Mutual TLS required: plain TCP and a client without a certificate are refused",
    source="scenarios.md M1; core-behaviour.md broker defaults",
)
def test_m1_mutual_tls_required(core_under_test: CoreUnderTest, devices: Devices) -> None:
    cut = core_under_test
    ep = cut.core.endpoints()[0]
    thing = cut.fleet.sensors[0]
    # an MQTT 3.1.1 CONNECT in the clear: a TLS listener must never answer with a CONNACK
    cid = thing.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x1e"
    payload = len(cid).to_bytes(2, "big") + cid
    packet = bytes([0x10, len(var) + len(payload)]) + var + payload
    with socket.create_connection((ep.host, ep.port), timeout=10) as s:
        s.sendall(packet)
        s.settimeout(5)
        try:
            answer = s.recv(4)
        except (TimeoutError, ConnectionResetError):
            answer = b""
    assert not answer.startswith(b"\x20\x02"), f"plain TCP got a CONNACK: {answer!r}"
    no_cert = devices.try_connect(thing, with_cert=False)
    assert not no_cert.connected, f"a client without a certificate was accepted: {no_cert}"  # type: ignore[attr-defined]
    devices.connect(thing)  # and with its certificate it is accepted


@pytest.mark.requirement(
    "The client id must equal the thing name; a mismatch is refused", source="scenarios.md M2"
)
def test_m2_client_id_must_be_thing_name(core_under_test: CoreUnderTest, devices: Devices) -> None:
    cut = core_under_test
    thing, other = cut.fleet.sensors[0], cut.fleet.sensors[1]
    for client_id in (other, f"{thing}-x", "anything"):
        res = devices.try_connect(thing, client_id)
        assert not res.connected, (  # type: ignore[attr-defined]
            f"certificate of {thing} connected with client id {client_id!r}: {res}"
        )
    devices.connect(thing, thing)


@pytest.mark.requirement(
    "Authorization per device-group policy: allowed publish/subscribe succeed, others are "
    "refused, and a refused message never reaches a subscriber",
    source="scenarios.md M3",
)
def test_m3_policy_authorization(core_under_test: CoreUnderTest, devices: Devices) -> None:
    cut = core_under_test
    f = cut.fleet
    observer = devices.connect(f.observer)
    assert observer.subscribe("#", 1) == 1, "the observer group may subscribe to everything"
    sensor = devices.connect(f.sensors[0])
    assert sensor.subscribe("test/topic/response", 1) == 1, "allowed subscription refused"
    assert sensor.subscribe("secret/#", 1) == 0x80, "a subscription outside the policy was granted"
    restricted = devices.connect(f.restricted)
    assert restricted.subscribe("test/topic/response", 1) == 0x80, "connect-only device got a subscription"
    forbidden = [
        (sensor, "secret/data"),  # not in the sensor policy
        (sensor, f"telemetry/{f.sensors[1]}/temp"),  # another thing's telemetry topic
        (restricted, "test/topic"),  # connect-only group
    ]
    for i, (dev, topic) in enumerate(forbidden):
        dev.publish(topic, f"forbidden-{i}".encode(), qos=1, timeout=5)
    allowed_own = f"telemetry/{f.sensors[0]}/temp"  # ${iot:Connection.Thing.ThingName}
    assert sensor.publish(allowed_own, b"own-telemetry", qos=1)
    marker = _marker()
    assert sensor.publish("test/topic", marker, qos=1)
    got = _delivered(observer, marker)
    leaked = [p for p in got if p.startswith(b"forbidden-")]
    assert not leaked, f"refused messages reached a subscriber: {leaked}"
    assert b"own-telemetry" in got, "a publish allowed through ${iot:Connection.Thing.ThingName} was dropped"


@pytest.mark.requirement(
    "QoS 0 and QoS 1 round trips device -> core -> device; QoS 1 delivered at least once, "
    "none lost while the core stays up",
    source="scenarios.md M4",
)
@pytest.mark.parametrize("qos", [0, 1])
def test_m4_round_trips(core_under_test: CoreUnderTest, devices: Devices, qos: int) -> None:
    cut = core_under_test
    receiver = devices.connect(cut.fleet.sensors[0])
    assert receiver.subscribe("relay/#", qos) == qos, f"QoS {qos} subscription not granted at QoS {qos}"
    sender = devices.connect(cut.fleet.sensors[1])
    run = uuid.uuid4().hex[:8]
    sent = [f"{run}-{i}".encode() for i in range(50)]
    for p in sent:
        assert sender.publish(f"relay/m4/{qos}", p, qos=qos), (
            f"publish of {p!r} at QoS {qos} not acknowledged"
        )
    got = {m.payload for m in receiver.collect(len(sent), 30)}
    missing = [p for p in sent if p not in got]
    assert not missing, f"{len(missing)} of {len(sent)} QoS {qos} messages lost, first {missing[:3]}"


@pytest.mark.requirement(
    "Max message size: a 128 KiB payload is delivered, a larger one refused",
    source="scenarios.md M5; core-behaviour.md (Moquette max message 128 KiB)",
)
def test_m5_max_message_size(core_under_test: CoreUnderTest, devices: Devices) -> None:
    cut = core_under_test
    receiver = devices.connect(cut.fleet.sensors[0])
    assert receiver.subscribe("relay/#", 1) == 1
    sender = devices.connect(cut.fleet.sensors[1])
    at_limit = b"a" * MAX_PAYLOAD
    assert sender.publish("relay/m5", at_limit, qos=1), "a message at the limit was not acknowledged"
    got = receiver.collect(1, 20)
    assert got and got[0].payload == at_limit, "a message at the limit was not delivered"
    sender.publish("relay/m5", b"b" * (MAX_PAYLOAD + 1), qos=1, timeout=5)
    sender2 = devices.connect(cut.fleet.sensors[2])
    marker = _marker()
    assert sender2.publish("relay/m5", marker, qos=1)
    over = [m for m in receiver.collect(5, QUIET_S + 5) if len(m.payload) > MAX_PAYLOAD]
    assert not over, f"a {len(over[0].payload)}-byte message above the {MAX_PAYLOAD}-byte limit was delivered"


def _server_serial(host: str, port: int, dev: MqttDevice) -> int:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=dev.creds.ca_pem)
    ctx.check_hostname = False
    assert dev.creds.cert_path and dev.creds.key_path
    ctx.load_cert_chain(str(dev.creds.cert_path), str(dev.creds.key_path))
    with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.requirement(
    "Broker certificate rotation: all clients are disconnected, reconnect with the same group "
    "CA, nothing accepted after reconnect is lost",
    source="scenarios.md M6; core-behaviour.md",
)
@pytest.mark.destructive
def test_m6_certificate_rotation(core_under_test: CoreUnderTest, devices: Devices) -> None:
    cut = core_under_test
    ep = cut.core.endpoints()[0]
    clients = [devices.connect(t) for t in cut.fleet.sensors[:3]]
    before = _server_serial(ep.host, ep.port, clients[0])
    cut.core.rotate_certificate()
    not_dropped = [c.client_id for c in clients if c.wait_disconnect(15) is None]
    assert not not_dropped, f"rotation did not disconnect {not_dropped} (a real core restarts its broker)"
    for c in clients:
        res = c.wait_connected(30)
        assert res.connected, f"{c.client_id} could not reconnect with the group CA after rotation: {res}"
    after = _server_serial(ep.host, ep.port, clients[0])
    assert after != before, "the broker still presents the old certificate"
    receiver, sender = clients[0], clients[1]
    assert receiver.subscribe("relay/#", 1) == 1
    sent = [f"after-rotation-{i}".encode() for i in range(20)]
    for p in sent:
        assert sender.publish("relay/m6", p, qos=1)
    got = {m.payload for m in receiver.collect(len(sent), 30)}
    assert set(sent) <= got, f"{len(set(sent) - got)} QoS 1 messages accepted after the reconnect were lost"
