"""Test support for gg_auth: a throwaway PKI, a real broker on a target, and a blocking paho-mqtt client.

Everything here waits with a timeout and says what it saw when it gives up, so a hung broker or a refused
TLS handshake fails the test with evidence instead of stalling the suite.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from harness.core.authplugin import plugin_conf_lines, plugin_path
from harness.core.authplugin.broker import Decision, parse_decisions, startup_status
from harness.core.authplugin.rules import DeviceGroupPolicy
from harness.targets.qemu_user import QemuUserTarget

#: The device-group policy the broker tests run against (core-behaviour.md format).
POLICY_DOC: dict[str, Any] = {
    "deviceGroups": {
        "formatVersion": "2021-03-05",
        "definitions": {
            "Sensors": {"selectionRule": "thingName: Sensor* OR thingName: Gateway",
                        "policyName": "SensorPolicy"},
            "Observers": {"selectionRule": "thingName: Observer", "policyName": "ObserverPolicy"},
        },
        "policies": {
            "SensorPolicy": {
                "AllowConnect": {"operations": ["mqtt:connect"], "resources": ["*"]},
                "AllowOwnTopics": {
                    "statementDescription": "each sensor publishes under its own name only",
                    "operations": ["mqtt:publish"],
                    "resources": ["mqtt:topic:sensors/${iot:Connection.Thing.ThingName}/*",
                                  "mqtt:topic:public/*"],
                },
                "AllowCommands": {
                    "operations": ["mqtt:subscribe"],
                    "resources": ["mqtt:topicfilter:commands/${iot:Connection.Thing.ThingName}",
                                  "mqtt:topicfilter:public/#"],
                },
            },
            # Sees everything ('#' is a subscription it must be allowed too), may publish nothing.
            "ObserverPolicy": {
                "Observe": {"operations": ["mqtt:connect", "mqtt:subscribe"], "resources": ["*"]},
            },
        },
    }
}

WAIT_S = 10.0
#: Emulated brokers do TLS handshakes in emulated ARM code: allow them more time.
EMULATED_WAIT_S = 30.0


# -- PKI ---------------------------------------------------------------------------------------------
@dataclass
class CertPair:
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@dataclass
class Pki:
    """A CA, a server certificate for localhost/127.0.0.1, and client certificates with CN = thing name."""

    root: Path
    _ca_key: ec.EllipticCurvePrivateKey = field(init=False)
    _ca_cert: x509.Certificate = field(init=False)
    _clients: dict[str, CertPair] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gg-auth test CA")])
        self._ca_cert = self._sign(name, self._ca_key.public_key(), ca=True, issuer=name)
        self.ca = _write(self.root / "ca.pem", self._ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        self.server = self._issue("server", "localhost", [x509.DNSName("localhost"), loopback])

    def _sign(self, subject: x509.Name, public_key: Any, *, ca: bool, issuer: x509.Name | None = None,
              sans: Sequence[x509.GeneralName] = ()) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer or self._ca_cert.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return builder.sign(self._ca_key, hashes.SHA256())

    def _issue(self, stem: str, cn: str, sans: Sequence[x509.GeneralName] = ()) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]), key.public_key(),
                          ca=False, sans=sans)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        return CertPair(_write(self.root / f"{stem}.pem", pem, 0o644),
                        _write(self.root / f"{stem}.key", _key_pem(key), 0o600))

    def client(self, thing: str) -> CertPair:
        """The device certificate of ``thing`` (made once)."""
        if thing not in self._clients:
            self._clients[thing] = self._issue(f"client-{thing}", thing)
        return self._clients[thing]


# -- broker --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto with gg_auth, started as a daemon inside ``target`` (which shares the host's network)."""

    _count = 0

    def __init__(self, target: QemuUserTarget, pki: Pki, policy: DeviceGroupPolicy | str, *,
                 faults: Sequence[str] = (), identity_as_username: bool = False,
                 extra_lines: Sequence[str] = (), wait_s: float = WAIT_S) -> None:
        Broker._count += 1
        self.target = target
        self.pki = pki
        self.wait_s = wait_s
        self.port = free_port()
        self.dir = f"/srv/gg-auth-{Broker._count}"
        self.conf = f"{self.dir}/mosquitto.conf"
        self.log_path = f"{self.dir}/mosquitto.log"
        self.pid_path = f"{self.dir}/mosquitto.pid"
        self._install(policy, faults, identity_as_username, extra_lines)

    def _install(self, policy: DeviceGroupPolicy | str, faults: Sequence[str], identity_as_username: bool,
                 extra_lines: Sequence[str]) -> None:
        t, local = self.target, self.pki.root / f"broker-{Broker._count}"
        local.mkdir(exist_ok=True)
        arch = t.profile.userland.architecture if t.profile.userland else "amd64"
        t.put(plugin_path(arch), "/usr/local/lib/gg_auth.so", 0o644)
        pki_dir = "/etc/gg-auth-test"
        t.put(self.pki.ca, f"{pki_dir}/ca.pem", 0o644)
        t.put(self.pki.server.cert, f"{pki_dir}/server.pem", 0o644)
        t.put(self.pki.server.key, f"{pki_dir}/server.key", 0o600)
        rules = local / "rules"
        rules.write_text(policy if isinstance(policy, str) else policy.rules_text())
        t.put(rules, f"{self.dir}/rules", 0o644)
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"listener {self.port} 127.0.0.1",
            f"cafile {pki_dir}/ca.pem",
            f"certfile {pki_dir}/server.pem",
            f"keyfile {pki_dir}/server.key",
            "require_certificate true",
            *(["use_identity_as_username true"] if identity_as_username else []),
            "tls_version tlsv1.2",
            *plugin_conf_lines("/usr/local/lib/gg_auth.so", f"{self.dir}/rules", faults),
            *extra_lines,
            "log_dest file " + self.log_path,
            "log_type all",
            "connection_messages true",
            "pid_file " + self.pid_path,
        ]
        conf = local / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        t.put(conf, self.conf, 0o644)
        # mosquitto 2.0 started as root drops to user mosquitto before it loads the plugin, the rules, the
        # key and opens its log and pid file: those must be the broker user's, as on a real core.
        t.run(["chown", "-R", "mosquitto:mosquitto", self.dir, f"{pki_dir}/server.key"], check=True)

    def start(self) -> Broker:
        res = self.target.run(["mosquitto", "-c", self.conf, "-d"], timeout=self.wait_s)
        if not res.ok:
            raise AssertionError(f"mosquitto did not start:\n{res.evidence()}\n{self.log()}")
        # `-d` returns once forked (exit 0 even if the plugin then refuses to load): watch the log.
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            state, errors = startup_status(self.log())
            if state == "running":
                return self
            if state == "failed":
                raise AssertionError(f"mosquitto failed to start: {errors}\n{self.log()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"mosquitto is not running on port {self.port} after {self.wait_s:g} s; "
                             f"log {self.log_path}:\n{self.log()[-3000:]}")

    def run_foreground(self, timeout: float = WAIT_S) -> tuple[int, str]:
        """Run mosquitto in the foreground (expected to exit at once): exit status and log."""
        res = self.target.run(["mosquitto", "-c", self.conf], timeout=timeout)
        return res.exit_status, self.log() + res.stderr

    def stop(self) -> None:
        pid = (self.target.read_text(self.pid_path) or "").strip()
        if not pid.isdigit() or not self.target.is_on:
            return
        self.target.run(["kill", pid], timeout=self.wait_s)
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            if not self.target.run(["kill", "-0", pid], timeout=self.wait_s).ok:
                return
            time.sleep(0.05)
        self.target.run(["kill", "-KILL", pid], timeout=self.wait_s)

    def log(self) -> str:
        return self.target.read_text(self.log_path) or ""

    def decisions(self) -> list[Decision]:
        return parse_decisions(self.log())

    def wait_decision(self, pred: Any, timeout: float | None = None) -> Decision:
        """The first logged decision for which ``pred`` is true (decisions are logged as they are made)."""
        deadline = time.monotonic() + (timeout or self.wait_s)
        while True:
            found = [d for d in self.decisions() if pred(d)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching gg_auth decision in {self.log_path}:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.05)


# -- MQTT client ---------------------------------------------------------------------------------------
class Probe:
    """A paho-mqtt client (MQTT 3.1.1, TLS 1.2, device certificate) with blocking, time-limited calls."""

    def __init__(self, broker: Broker, thing: str, client_id: str | None = None) -> None:
        self.broker = broker
        self.wait_s = broker.wait_s
        pair = broker.pki.client(thing)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id if client_id is not None
                                  else thing, protocol=mqtt.MQTTv311)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(broker.pki.ca))
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2  # as Greengrass's broker
        context.load_cert_chain(str(pair.cert), str(pair.key))
        self.client.tls_set_context(context)
        self.client.reconnect_delay_set(min_delay=60, max_delay=60)  # a refused client must not retry here
        self._connack: queue.Queue[Any] = queue.Queue()
        self._subacks: dict[int, list[int]] = {}
        self._suback_event = threading.Condition()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._started = False

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        self._connack.put(reason_code)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any],
                      properties: Any) -> None:
        with self._suback_event:
            self._subacks[mid] = [rc.value for rc in reason_codes]
            self._suback_event.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload)))

    def connect(self) -> Any:
        """Connect and return the CONNACK reason code (paho's ReasonCode; ``is_failure`` when refused)."""
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30)
        self.client.loop_start()
        self._started = True
        try:
            return self._connack.get(timeout=self.wait_s)
        except queue.Empty:
            raise AssertionError(f"no CONNACK within {self.wait_s:g} s; broker log:\n"
                                 f"{self.broker.log()[-2000:]}") from None

    def subscribe(self, *filters: str, qos: int = 1) -> list[int]:
        """Subscribe and return the SUBACK codes, one per filter (granted QoS, or 0x80 for refused)."""
        rc, mid = self.client.subscribe([(f, qos) for f in filters])
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None, f"subscribe failed locally: {rc}"
        with self._suback_event:
            if not self._suback_event.wait_for(lambda: mid in self._subacks, timeout=self.wait_s):
                raise AssertionError(f"no SUBACK for {filters} within {self.wait_s:g} s")
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes = b"x", qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=self.wait_s)
        assert info.is_published(), f"publish to {topic} not acknowledged within {self.wait_s:g} s"

    def receive(self, timeout: float | None = None) -> tuple[str, bytes]:
        try:
            return self.messages.get(timeout=timeout or self.wait_s)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout or self.wait_s:g} s") from None

    def received_until(self, sentinel_topic: str) -> list[str]:
        """Topics received up to and including ``sentinel_topic``: proves absence without sleeping, since
        one publisher's messages are delivered in order."""
        topics: list[str] = []
        while not topics or topics[-1] != sentinel_topic:
            topics.append(self.receive()[0])
        return topics

    def close(self) -> None:
        if self._started:
            self.client.disconnect()
            self.client.loop_stop()
            self._started = False


BrokerFactory = Callable[..., Broker]
ProbeFactory = Callable[..., Probe]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="qemu-user targets need root")
