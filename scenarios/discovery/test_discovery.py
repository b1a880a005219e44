"""Discovery scenarios D1-D4: devices find their core through the (offline) cloud and connect to it.

They talk HTTPS to the discovery endpoint and MQTT to the core, and drive the core only through the Core
interface, so they qualify any core whose cloud side is reachable.
"""

from __future__ import annotations

import uuid

import pytest

from harness.clients import sdk
from harness.clients.discovery_http import discover_raw
from harness.clients.mqtt import MqttDevice
from harness.pytest_core import CoreUnderTest, core_log_tail, foreign_device_files

NOT_FOUND = {"errorMessage": "The thing provided for discovery was not found"}


def _ask(
    cut: CoreUnderTest, discovery: object, thing: str, about: str | None = None, with_cert: bool = True
) -> object:
    files = cut.cloud.device_files(thing)  # type: ignore[attr-defined]
    return discover_raw(
        discovery.port,
        cut.cloud.root_ca_path,  # type: ignore[attr-defined]
        files.cert_path if with_cert else None,
        files.key_path if with_cert else None,
        about or thing,
    )


@pytest.mark.requirement(
    "A provisioned device discovers its core: 200, the exact schema, the core's CA and "
    "every connectivity entry",
    source="scenarios.md D1; core-behaviour.md Discovery API",
)
def test_d1_device_discovers_its_core(core_under_test: CoreUnderTest, discovery: object) -> None:
    cut = core_under_test
    thing = cut.fleet.sensors[0]
    ans = _ask(cut, discovery, thing)
    assert ans.status == 200, f"discovery for {thing}: {ans.status} {ans.raw or ans.error}"  # type: ignore[attr-defined]
    body = ans.body  # type: ignore[attr-defined]
    assert list(body) == ["GGGroups"], f"top-level keys {list(body)}"
    assert len(body["GGGroups"]) == 1, "V2: one group per core"
    group = body["GGGroups"][0]
    assert set(group) == {"GGGroupId", "Cores", "CAs"}, f"group keys {sorted(group)}"
    assert group["GGGroupId"] == f"greengrassV2-coreDevice-{cut.core.name}"
    (core,) = group["Cores"]
    assert set(core) == {"thingArn", "Connectivity"}, f"core keys {sorted(core)} (thingArn is lowercase)"
    assert core["thingArn"] == cut.cloud.thing_arn(cut.core.name)  # type: ignore[attr-defined]
    got = [(c["HostAddress"], c["PortNumber"]) for c in core["Connectivity"]]
    want = [(e.host, e.port) for e in cut.core.endpoints()]
    assert got == want, f"connectivity {got}, core listens on {want}"
    for entry in core["Connectivity"]:
        assert set(entry) == {"Id", "HostAddress", "PortNumber", "Metadata"}, f"entry keys {sorted(entry)}"
    assert group["CAs"] == [cut.core_ca_pem], "CAs must hold exactly the core's CA"
    # the CA handed out really is the one the core's broker presents
    dev = MqttDevice(thing, cut.creds(thing))
    try:
        res = dev.connect(*got[0])
        assert res.connected, (
            f"TLS to the core with the discovered CA failed: {res}\n{core_log_tail(cut.core)}"
        )
    finally:
        dev.close()


@pytest.mark.requirement(
    "The real SDK client (awsiot.greengrass_discovery.DiscoveryClient) parses the response "
    "and connects to the core with it",
    source="scenarios.md D2",
)
def test_d2_sdk_client_discovers_and_connects(core_under_test: CoreUnderTest, discovery: object) -> None:
    cut = core_under_test
    thing = cut.fleet.sensors[1]
    files = cut.cloud.device_files(thing)  # type: ignore[attr-defined]
    device = sdk.SdkDevice(thing, files.cert_path, files.key_path)
    response = sdk.discover(device, cut.cloud.root_ca_path, discovery.port)  # type: ignore[attr-defined]
    conn, where = sdk.connect_from_discovery(device, response)
    try:
        assert where == (cut.core.endpoints()[0].host, cut.core.endpoints()[0].port)
        payload = f"sdk-{uuid.uuid4().hex}".encode()
        assert sdk.round_trip(conn, "relay/#", "relay/sdk", payload) == payload
    finally:
        sdk.disconnect(conn)


@pytest.mark.requirement(
    "No core: 404 with the documented body; another thing: 403; revoked certificate or a "
    "foreign CA: the connection is closed with no answer",
    source="scenarios.md D3",
)
def test_d3_discovery_refusals(core_under_test: CoreUnderTest, discovery: object, tmp_path: object) -> None:
    cut = core_under_test
    lonely = _ask(cut, discovery, cut.fleet.lonely)
    assert lonely.status == 404 and lonely.body == NOT_FOUND, f"unassociated device: {lonely}"  # type: ignore[attr-defined]
    other = _ask(cut, discovery, cut.fleet.sensors[0], about=cut.fleet.sensors[1])
    assert other.status == 403, f"asking about another thing: {other}"  # type: ignore[attr-defined]
    revoked = _ask(cut, discovery, cut.fleet.revoked)
    assert revoked.status is None, f"revoked certificate got an HTTP answer: {revoked}"  # type: ignore[attr-defined]
    cert, key = foreign_device_files(cut.fleet.sensors[0], tmp_path)  # type: ignore[arg-type]
    ans = discover_raw(discovery.port, cut.cloud.root_ca_path, cert, key, cut.fleet.sensors[0])  # type: ignore[attr-defined]
    assert ans.status is None, f"a certificate from a foreign CA got an HTTP answer: {ans}"


@pytest.mark.requirement(
    "Connectivity change: discovery returns the new entry; clients that re-discover reconnect",
    source="scenarios.md D4",
)
@pytest.mark.destructive
def test_d4_connectivity_change(core_under_test: CoreUnderTest, discovery: object) -> None:
    cut = core_under_test
    thing = cut.fleet.sensors[2]
    old = cut.core.endpoints()[0]
    new = cut.core.move()
    assert (new.host, new.port) != (old.host, old.port)
    ans = _ask(cut, discovery, thing)
    assert ans.status == 200  # type: ignore[attr-defined]
    got = [(c["HostAddress"], c["PortNumber"]) for c in ans.body["GGGroups"][0]["Cores"][0]["Connectivity"]]  # type: ignore[attr-defined]
    assert got == [(new.host, new.port)], f"after the move discovery returns {got}, the core is at {new}"
    dev = MqttDevice(thing, cut.creds(thing))
    try:
        res = dev.connect(*got[0])
        assert res.connected, f"re-discovered client could not reconnect: {res}"
    finally:
        dev.close()
