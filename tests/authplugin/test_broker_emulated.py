"""The cross-compiled plugin in an emulated board's broker: armhf mosquitto under qemu-user (Cortex-A7).

One end-to-end pass is enough to prove the ARM build loads and decides like the native one; the decision
logic itself is covered natively in test_broker.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ggauth_support import EMULATED_WAIT_S, Broker, Pki, Probe, needs_root

from harness.core.authplugin.rules import DeviceGroupPolicy
from harness.profiles import find_profile
from harness.targets.qemu_user import QemuUserTarget

pytestmark = [pytest.mark.qemu, needs_root, pytest.mark.xdist_group("authplugin-emulated")]


@pytest.fixture
def armhf_broker(tmp_path: Path, policy: DeviceGroupPolicy) -> Iterator[Broker]:
    target = QemuUserTarget(find_profile("qemu-armv7l"), instance="gg-auth-armhf")
    broker: Broker | None = None
    try:
        target.power_on()
        assert target.emulated, "qemu-armv7l must run emulated ARM code for this test to mean anything"
        broker = Broker(target, Pki(tmp_path / "pki"), policy, wait_s=EMULATED_WAIT_S).start()
        yield broker
    finally:
        if broker is not None:
            broker.stop()
        target.close()


def test_cross_compiled_plugin_decides_in_the_emulated_broker(armhf_broker: Broker) -> None:
    assert "gg_auth: loaded 2 device groups" in armhf_broker.log()
    probes = [Probe(armhf_broker, "Observer"), Probe(armhf_broker, "Sensor1"),
              Probe(armhf_broker, "Sensor1", "Sensor2")]
    try:
        observer, sensor, impostor = probes
        assert impostor.connect().value == 135  # CONNACK "not authorized"
        assert not observer.connect().is_failure and not sensor.connect().is_failure
        assert observer.subscribe("#") == [1]
        assert sensor.subscribe("commands/Sensor1", "commands/Sensor2") == [1, 0x80]
        sensor.publish("sensors/Sensor2/temp")
        sensor.publish("sensors/Sensor1/temp")
        assert observer.received_until("sensors/Sensor1/temp") == ["sensors/Sensor1/temp"]
    finally:
        for p in probes:
            p.close()
    verdicts = [(d.verdict, d.operation, d.reason) for d in armhf_broker.decisions()]
    assert ("deny", "connect", "client-id-mismatch") in verdicts
    assert ("deny", "publish", "no-policy") in verdicts
