"""Network scenarios N1-N4: the core behind a real link (namespace + veth) that the harness impairs and cuts.

N1 devices reconnect after a partition by backoff with jitter; N2 QoS 1 delivery to a persistent session holds
through a partition; N3 the core keeps serving local devices while its cloud link is cut; N4 discovery
retries behave while the core is unreachable on every connectivity entry. Devices are real
MQTT clients with mutual TLS; the core is reached only over the network and driven through its interface.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from harness.clients.mqtt import MqttDevice
from harness.net.reconnect import ReconnectingDevice, judge
from harness.net.stand import NetworkStand
from harness.profiles import DeviceProfile
from harness.pytest_network import NetUnderTest, net_record
from harness.records import TestRecord

N1_PARTITION_S = 5.0
N2_PARTITION_S = 6.0  # longer than 1.5 x the subscriber's 2 s keep-alive: the broker drops the connection
N3_CUT_S = 8.0
RATE_HZ = 10
N4_UNREACHABLE_S = 5.0
N2_COLLECT_S = 25.0
N3_LOCAL_IMPAIRMENT = "delay=20ms,jitter=5ms,loss=1%"


def _wait_for(dev: MqttDevice, topic: str, payload: bytes, timeout: float) -> bool:
    """Whether ``payload`` arrives on ``topic`` within ``timeout`` (other messages are skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if any(m.topic == topic and m.payload == payload for m in dev.collect(1, left)):
            return True
    return False


def _stand(nut: NetUnderTest) -> NetworkStand:
    assert isinstance(nut.stand, NetworkStand)
    assert nut.stand.control is not None and nut.stand.core is not None and nut.stand.topology is not None
    return nut.stand


@pytest.mark.requirement(
    "after a partition client devices reconnect with backoff and jitter: none retries faster than its policy "
    "allows or in a tight loop, the retry delays are spread (no synchronized spikes), all are back after it "
    "heals",
    source="issue #12; scenarios.md network",
)
def test_n1_reconnect_backoff_jitter(
    net_stand: NetUnderTest, profile: DeviceProfile, record_result: Callable[[TestRecord], None]
) -> None:
    stand = _stand(net_stand)
    ctl, link = stand.control, stand.topology.link("fleet")  # type: ignore[union-attr]
    assert ctl is not None
    policy = net_stand.client_backoff
    devices = [
        ReconnectingDevice(thing, net_stand.creds(thing), link.core_addr, stand.core.port, policy, seed=i)  # type: ignore[union-attr]
        for i, thing in enumerate(net_stand.reconnectors)
    ]
    for d in devices:
        d.start()
    try:
        for d in devices:
            assert d.connected.wait(30), (
                f"{d.thing} could not connect before the partition: {d.attempts[-1:]}"
            )
        cut_at = time.time()
        ctl.cut("fleet", "reject", kill_established=True)
        time.sleep(N1_PARTITION_S)
        healed_at = time.time()  # taken before: a retry that lands while the rule goes away is a reconnect
        ctl.heal("fleet")
        deadline = time.monotonic() + policy.cap_s + 15
        while time.monotonic() < deadline and not all(d.connected.is_set() for d in devices):
            time.sleep(0.1)
    finally:
        for d in devices:
            d.close()
    verdict = judge({d.thing: d.attempts for d in devices}, policy, cut_at, healed_at)
    message = (
        "; ".join(verdict.problems[:4])
        if verdict.problems
        else f"{len(devices)} devices reconnected with {policy} after a {N1_PARTITION_S:g} s partition"
    )
    net_record(
        record_result,
        net_stand,
        profile,
        "n1_reconnect_backoff_jitter",
        ok=verdict.ok,
        requirement="reconnect with backoff and jitter after a partition",
        message=message,
        evidence="\n".join([*verdict.problems, *verdict.evidence]),
    )
    assert verdict.ok, message + "\n" + "\n".join(verdict.evidence)


@pytest.mark.requirement(
    "QoS 1 messages to a persistent session (clean session off) are all delivered after a partition that "
    "outlasts the keep-alive, once the device reconnects",
    source="issue #12; scenarios.md network",
)
def test_n2_qos1_through_partition(
    net_stand: NetUnderTest, profile: DeviceProfile, record_result: Callable[[TestRecord], None]
) -> None:
    stand = _stand(net_stand)
    ctl, topo, core = stand.control, stand.topology, stand.core
    assert ctl is not None and topo is not None and core is not None
    sub_thing, pub_thing = net_stand.sensors[0], net_stand.sensors[1]
    topic = f"relay/n2/{uuid.uuid4().hex[:8]}"
    # the subscriber is across the fleet link; the publisher reaches the core over its other interface
    sub = MqttDevice(sub_thing, net_stand.creds(sub_thing), keepalive=2, clean_session=False)
    pub = MqttDevice(pub_thing, net_stand.creds(pub_thing))
    try:
        res = sub.connect(topo.link("fleet").core_addr, core.port)
        assert res.connected, f"subscriber could not connect: {res}"
        granted = sub.subscribe("relay/#", 1)  # the device-group policy grants this filter literally
        assert granted in (0, 1), f"the core refused the subscription to relay/# (SUBACK {granted})"
        res = pub.connect(topo.link("cloud").core_addr, core.port)
        assert res.connected, f"publisher could not connect: {res}"
        total = int((N2_PARTITION_S + 4) * RATE_HZ)
        cut_seq = heal_seq = -1
        start = time.monotonic()
        for seq in range(total):
            if seq == RATE_HZ:
                ctl.cut("fleet", "drop")
                cut_seq = seq
            if seq == RATE_HZ + int(N2_PARTITION_S * RATE_HZ):
                ctl.heal("fleet")
                heal_seq = seq
            assert pub.publish(topic, str(seq).encode(), qos=1, timeout=10), f"publish {seq} got no PUBACK"
            time.sleep(max(0.0, start + (seq + 1) / RATE_HZ - time.monotonic()))
        got: set[int] = set()
        deadline = time.monotonic() + N2_COLLECT_S  # the session's queue arrives after the reconnect
        while len(got) < total and (left := deadline - time.monotonic()) > 0:
            got |= {int(m.payload) for m in sub.collect(1, left) if m.topic == topic}
        disconnects = []
        while not sub.disconnects.empty():
            disconnects.append(sub.disconnects.get_nowait())
    finally:
        sub.close()
        pub.close()
    missing = sorted(set(range(total)) - got)
    ok = not missing and bool(disconnects)
    if missing:
        message = (
            "QoS 1 messages to the persistent session were lost through the partition: "
            f"{len(missing)} of {total} (seq {missing[0]}-{missing[-1]}; cut at {cut_seq}, "
            f"healed at {heal_seq}; SUBACK granted QoS {granted})"
        )
    elif not disconnects:
        message = "the subscriber never lost its connection: the partition did not outlast the keep-alive"
    else:
        message = f"all {total} QoS 1 messages delivered across a {N2_PARTITION_S:g} s partition"
    net_record(
        record_result,
        net_stand,
        profile,
        "n2_qos1_through_partition",
        ok=ok,
        requirement="QoS 1 delivery holds through a short partition for persistent sessions",
        message=message,
        evidence=f"published {total}, received {len(got)} distinct, subscriber disconnects: {disconnects}",
    )
    assert ok, message


@pytest.mark.requirement(
    "while the core's cloud link is cut, local devices keep exchanging messages through the core; once it "
    "heals, local traffic reaches the cloud again",
    source="issue #12; seed (devices keep talking locally when the cloud is gone)",
)
@pytest.mark.net_impair(N3_LOCAL_IMPAIRMENT)  # and the local network is not perfect either
def test_n3_local_while_cloud_cut(
    net_stand: NetUnderTest, profile: DeviceProfile, record_result: Callable[[TestRecord], None]
) -> None:
    stand = _stand(net_stand)
    ctl, topo, core, cb = stand.control, stand.topology, stand.core, stand.cloud_broker
    assert ctl is not None and topo is not None and core is not None and cb is not None
    a, b, watcher = net_stand.sensors[0], net_stand.sensors[1], net_stand.sensors[2]
    topic = f"relay/n3/{uuid.uuid4().hex[:8]}"
    addr = topo.link("fleet").core_addr
    pub = MqttDevice(a, net_stand.creds(a))
    sub = MqttDevice(b, net_stand.creds(b))
    cloud_sub = MqttDevice(watcher, net_stand.cloud_creds(watcher))
    results: list[tuple[int, float | None]] = []
    try:
        for dev, host, port in (
            (pub, addr, core.port),
            (sub, addr, core.port),
            (cloud_sub, cb.host, cb.port),
        ):
            res = dev.connect(host, port)
            assert res.connected, f"{dev.client_id} could not connect to {host}:{port}: {res}"
        assert sub.subscribe("relay/#", 1) in (0, 1), "the core refused the subscription to relay/#"
        assert cloud_sub.subscribe(topic, 1) == 1, "the cloud endpoint refused the subscription"
        assert pub.publish(topic, b"before", qos=1)
        before = [m.payload for m in cloud_sub.collect(1, 15)]
        assert before == [b"before"], (
            "the core's bridge did not carry local traffic to the cloud before the cut"
        )
        assert _wait_for(sub, topic, b"before", 5), "local delivery failed before the cut"
        ctl.cut("cloud", "drop")
        cut_end = time.monotonic() + N3_CUT_S
        seq = 0
        while time.monotonic() < cut_end:
            t0 = time.monotonic()
            sent = pub.publish(topic, f"local-{seq}".encode(), qos=1, timeout=2)
            got = _wait_for(sub, topic, f"local-{seq}".encode(), 2) if sent else False
            results.append((seq, time.monotonic() - t0 if got else None))
            seq += 1
            time.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))
        ctl.heal("cloud")
        pub.publish(topic, b"after", qos=1, timeout=20)
        deadline = time.monotonic() + 30
        after = False
        while time.monotonic() < deadline and not after:
            after = any(m.payload == b"after" for m in cloud_sub.collect(1, 1))
    finally:
        for dev in (pub, sub, cloud_sub):
            dev.close()
    failed = [s for s, t in results if t is None]
    problems = []
    if failed:
        problems.append(
            f"the core stopped serving local devices while its cloud link was cut: {len(failed)} of "
            f"{len(results)} local QoS 1 round trips failed (first at {failed[0] * 0.5:.1f} s into the cut)"
        )
    if not after:
        problems.append("after the cloud link healed, local traffic did not reach the cloud within 30 s")
    message = "; ".join(problems) or (
        f"{len(results)} local round trips ({N3_LOCAL_IMPAIRMENT} on the local link) during an "
        f"{N3_CUT_S:g} s cloud cut, cloud reached again after it"
    )
    rtts = [t for _, t in results if t is not None]
    net_record(
        record_result,
        net_stand,
        profile,
        "n3_local_while_cloud_cut",
        ok=not problems,
        requirement="the core keeps serving local clients while its cloud link is cut",
        message=message,
        evidence=f"round trips: {len(rtts)}/{len(results)} ok"
        + (f", max {max(rtts) * 1000:.0f} ms" if rtts else "")
        + f"; cloud got the post-heal message: {after}",
    )
    assert not problems, message


@pytest.mark.requirement(
    "while the core is unreachable on every connectivity entry, devices try each entry, then re-discover by "
    "backoff with jitter (never in a tight loop against the discovery endpoint), and connect once it is back",
    source="issue #12; scenarios.md network; Greengrass discovery client flow",
)
def test_n4_discovery_retries(
    net_stand: NetUnderTest,
    profile: DeviceProfile,
    discovery: object,
    record_result: Callable[[TestRecord], None],
) -> None:
    from harness.cloud.api import Cloud
    from harness.cloud.discovery import DiscoveryServer
    from harness.net.discovery_retry import DiscoveringDevice, DiscoveryTarget, judge_discovery

    stand = _stand(net_stand)
    ctl = stand.control
    assert ctl is not None and isinstance(discovery, DiscoveryServer) and isinstance(net_stand.cloud, Cloud)
    target = DiscoveryTarget(discovery.host, discovery.port, net_stand.cloud.root_ca_path)
    policy = net_stand.client_backoff
    fault = "discovery_without_backoff" if "discovery_without_backoff" in net_stand.client_faults else None
    ctl.cut("fleet", "reject")
    ctl.cut("cloud", "reject")
    devices = []
    for i, thing in enumerate(net_stand.reconnectors[:6]):
        files = net_stand.cloud.device_files(thing)
        devices.append(
            DiscoveringDevice(
                thing, files.cert_path, files.key_path, target, policy, seed=100 + i, fault=fault
            )
        )
    try:
        for d in devices:
            d.start()
        time.sleep(N4_UNREACHABLE_S)
        healed_at = time.time()  # taken before: a device may connect while the second link heals
        ctl.heal("fleet")
        ctl.heal("cloud")
        deadline = time.monotonic() + policy.cap_s + 20
        while time.monotonic() < deadline and not all(d.connected.is_set() for d in devices):
            time.sleep(0.1)
    finally:
        for d in devices:
            d.close()
    entries = max(len(d.entries) for d in devices)
    verdict = judge_discovery({d.thing: d.attempts for d in devices}, entries, policy, healed_at)
    message = (
        "; ".join(verdict.problems[:3])
        if verdict.problems
        else f"{len(devices)} devices re-discovered with {policy} through {entries} unreachable entries "
        f"for {N4_UNREACHABLE_S:g} s, then connected"
    )
    net_record(
        record_result,
        net_stand,
        profile,
        "n4_discovery_retries",
        ok=verdict.ok,
        requirement="discovery retries behave while the core is unreachable",
        message=message,
        evidence="\n".join([*verdict.problems, *verdict.evidence]),
    )
    assert verdict.ok, message + "\n" + "\n".join(verdict.evidence)
