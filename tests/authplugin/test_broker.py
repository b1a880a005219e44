"""gg_auth in Debian's mosquitto 2.0.11 inside a native target, driven by a real MQTT client (paho-mqtt).

Each test starts its own broker from the Python-compiled rules and checks what the client sees (CONNACK,
SUBACK, delivered messages) and what the plugin logged, and that the Python model predicted the same.
"""

from __future__ import annotations

import time

import pytest
from ggauth_support import BrokerFactory, ProbeFactory, needs_root

from harness.core.authplugin.broker import startup_status
from harness.core.authplugin.rules import DeviceGroupPolicy

pytestmark = [pytest.mark.qemu, needs_root, pytest.mark.xdist_group("authplugin-native")]

NOT_AUTHORIZED = 135  # paho's reason code for MQTT 3.1.1 CONNACK return code 5
SUB_REFUSED = 0x80


@pytest.mark.parametrize(
    ("thing", "client_id", "accepted", "reason"),
    [
        ("Sensor1", "Sensor1", True, "group:Sensors"),  # prefix term Sensor*
        ("Gateway", "Gateway", True, "group:Sensors"),  # exact term, second OR branch
        ("Sensor1", "Sensor2", False, "client-id-mismatch"),  # a sensor's certificate, another's id
        ("Gateway2", "Gateway2", False, "no-policy"),  # exact term does not match a longer name
        ("Stranger", "Stranger", False, "no-policy"),  # in no device group
    ],
)
def test_connect_needs_client_id_equal_to_thing_and_a_connect_policy(
    make_broker: BrokerFactory,
    probe: ProbeFactory,
    policy: DeviceGroupPolicy,
    thing: str,
    client_id: str,
    accepted: bool,
    reason: str,
) -> None:
    broker = make_broker()
    rc = probe(broker, thing, client_id).connect()
    assert (not rc.is_failure) is accepted, f"CONNACK {rc}\n{broker.log()[-2000:]}"
    if not accepted:
        assert rc.value == NOT_AUTHORIZED, rc
    d = broker.wait_decision(lambda d: d.operation == "connect")
    assert (d.allowed, d.thing, d.client, d.reason) == (accepted, thing, client_id, reason)
    assert d.resource == f"mqtt:clientId:{client_id}"
    if client_id == thing:
        assert policy.allows(thing, "mqtt:connect", client_id) is accepted


def test_subscribe_grants_allowed_filters_and_refuses_the_rest(
    make_broker: BrokerFactory, probe: ProbeFactory, policy: DeviceGroupPolicy
) -> None:
    broker = make_broker()
    sensor = probe(broker, "Sensor1")
    assert not sensor.connect().is_failure
    filters = ["commands/Sensor1", "public/#", "commands/Sensor2", "#", "public/+"]
    codes = sensor.subscribe(*filters, qos=1)
    # Filters are matched literally: 'public/+' is not the allowed 'public/#'.
    assert codes == [1, 1, SUB_REFUSED, SUB_REFUSED, SUB_REFUSED]
    assert [policy.allows("Sensor1", "mqtt:subscribe", f) for f in filters] == [c == 1 for c in codes]
    denied = [d.resource for d in broker.decisions() if d.operation == "subscribe" and not d.allowed]
    assert denied == ["mqtt:topicfilter:commands/Sensor2", "mqtt:topicfilter:#", "mqtt:topicfilter:public/+"]


def test_disallowed_publish_never_reaches_a_wildcard_subscriber(
    make_broker: BrokerFactory, probe: ProbeFactory
) -> None:
    broker = make_broker()
    observer = probe(broker, "Observer")
    assert not observer.connect().is_failure
    assert observer.subscribe("#") == [1]  # the observer's own policy allows subscribing to '#'
    sensor = probe(broker, "Sensor1")
    assert not sensor.connect().is_failure
    # MQTT 3.1.1 has no PUBACK reason code: a refused QoS 1 publish is acknowledged and dropped.
    for topic in ("admin/reboot", "sensors/Sensor2/temp", "public/news", "sensors/Sensor1/temp"):
        sensor.publish(topic)
    assert observer.received_until("sensors/Sensor1/temp") == ["public/news", "sensors/Sensor1/temp"]
    denied = [d.resource for d in broker.decisions() if d.operation == "publish" and not d.allowed]
    assert denied == ["mqtt:topic:admin/reboot", "mqtt:topic:sensors/Sensor2/temp"]


def test_thing_name_variable_gives_each_thing_its_own_topics(
    make_broker: BrokerFactory, probe: ProbeFactory
) -> None:
    broker = make_broker()
    observer = probe(broker, "Observer")
    assert not observer.connect().is_failure
    assert observer.subscribe("sensors/#") == [1]
    one, two = probe(broker, "Sensor1"), probe(broker, "Sensor2")
    assert not one.connect().is_failure and not two.connect().is_failure
    assert one.subscribe("commands/Sensor1", "commands/Sensor2") == [1, SUB_REFUSED]
    assert two.subscribe("commands/Sensor2", "commands/Sensor1") == [1, SUB_REFUSED]
    two.publish("sensors/Sensor1/spoofed")
    two.publish("sensors/Sensor2/temp")
    assert observer.received_until("sensors/Sensor2/temp") == ["sensors/Sensor2/temp"]
    spoof = broker.wait_decision(lambda d: d.resource == "mqtt:topic:sensors/Sensor1/spoofed")
    assert (spoof.allowed, spoof.thing, spoof.reason) == (False, "Sensor2", "no-policy")


def test_fault_no_client_id_check_lets_an_impostor_connect(
    make_broker: BrokerFactory, probe: ProbeFactory
) -> None:
    broker = make_broker(faults=["no_client_id_check"])
    assert "faults: no_client_id_check" in broker.log()
    rc = probe(broker, "Sensor1", "Sensor2").connect()
    assert not rc.is_failure, f"the seeded defect did not disable the check: CONNACK {rc}"
    assert "gg_auth: fault no_client_id_check: accepting client=Sensor2 for thing=Sensor1" in broker.log()
    # The connect policy still applies to the certificate's thing.
    assert probe(broker, "Stranger", "Sensor1").connect().value == NOT_AUTHORIZED


def test_fault_no_acl_allows_every_publish_and_subscribe(
    make_broker: BrokerFactory, probe: ProbeFactory
) -> None:
    broker = make_broker(faults=["no_acl"])
    sensor = probe(broker, "Sensor1")
    assert not sensor.connect().is_failure
    assert sensor.subscribe("#") == [1]
    sensor.publish("admin/reboot")
    assert sensor.receive()[0] == "admin/reboot"
    reasons = {(d.operation, d.reason) for d in broker.decisions() if d.operation != "connect"}
    assert reasons == {("subscribe", "fault:no_acl"), ("publish", "fault:no_acl")}
    # CONNECT checks are not part of this fault.
    assert probe(broker, "Sensor1", "Sensor2").connect().value == NOT_AUTHORIZED


def test_use_identity_as_username_skips_the_connect_check(
    make_broker: BrokerFactory, probe: ProbeFactory
) -> None:
    """Why the broker must not set use_identity_as_username: mosquitto 2.0 then never asks the plugin about
    the CONNECT. gg_auth still denies the impostor every publish and subscribe, and warns."""
    broker = make_broker(identity_as_username=True)
    impostor = probe(broker, "Sensor1", "Sensor2")
    assert not impostor.connect().is_failure  # mosquitto's limitation, not the plugin's decision
    assert impostor.subscribe("commands/Sensor1") == [SUB_REFUSED]
    d = broker.wait_decision(lambda d: d.operation == "subscribe")
    assert (d.allowed, d.reason) == (False, "client-id-mismatch")
    assert "gg_auth: warning: client Sensor2 was never authenticated by gg_auth" in broker.log()


GOOD_GROUP = "group G\nmatch prefix:\nallow connect *\nend\n"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("", "empty (expected 'gg_auth_rules 1')"),
        ("gg_auth_rules 2\n", "line 1: expected 'gg_auth_rules 1'"),
        ("gg_auth_rules 1\n" + GOOD_GROUP + "allow connect *\n", "line 6: 'allow' outside a group"),
        ("gg_auth_rules 1\ngroup G\nallow delete *\nend\n", "line 3: unknown operation 'delete'"),
        ("gg_auth_rules 1\ngroup G\nmatch thing:X\nend\n", "line 3: match term 'thing:X'"),
        (
            "gg_auth_rules 1\ngroup G\nallow publish mqtt:topic:${iot:ClientId}\nend\n",
            "line 3: unknown policy variable",
        ),
        ("gg_auth_rules 1\ngroup G\nmatch exact:X\n", "group 'G' has no 'end'"),
        ("gg_auth_rules 1\ngroup G\ngroup H\n", "line 3: 'group' inside group 'G'"),
        ("gg_auth_rules 1\nrevoke X\n", "line 2: unknown directive 'revoke'"),
    ],
    ids=[
        "empty",
        "version",
        "outside-group",
        "operation",
        "term",
        "variable",
        "no-end",
        "nested",
        "directive",
    ],
)
def test_malformed_rules_file_stops_the_broker_from_starting(
    make_broker: BrokerFactory, rules: str, message: str
) -> None:
    broker = make_broker(rules, start=False)
    status, log = broker.run_foreground()
    assert status != 0, f"mosquitto started with a malformed rules file:\n{log}"
    assert f"gg_auth: error: rules file {broker.dir}/rules" in log and message in log, log


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "plugin_opt_faults no_acl, no_tls",
            "plugin_opt_faults: unknown fault 'no_tls' "
            "(allowed: no_client_id_check, no_acl, allow_no_certificate)",
        ),
        ("plugin_opt_rule /etc/rules", "unknown option plugin_opt_rule (allowed: rules, faults, log)"),
        ("plugin_opt_log some", "plugin_opt_log: 'some' is not all or deny"),
    ],
    ids=["fault", "option", "log"],
)
def test_bad_plugin_option_stops_the_broker_from_starting(
    make_broker: BrokerFactory, option: str, message: str
) -> None:
    broker = make_broker(start=False, extra_lines=[option])
    status, log = broker.run_foreground()
    assert status != 0 and f"gg_auth: error: {message}" in log, log


def test_missing_rules_file_stops_the_daemon_though_dash_d_exits_0(make_broker: BrokerFactory) -> None:
    broker = make_broker(start=False)
    broker.target.run(["rm", f"{broker.dir}/rules"], check=True)
    res = broker.target.run(["mosquitto", "-c", broker.conf, "-d"], timeout=broker.wait_s)
    assert res.ok, "mosquitto 2.0.11 -d forks before loading plugins; if this changed, update startup_status"
    deadline = time.monotonic() + broker.wait_s
    while (state := startup_status(broker.log()))[0] == "starting" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state[0] == "failed", broker.log()
    missing = f"gg_auth: error: rules file {broker.dir}/rules: cannot open: No such file or directory"
    assert missing in state[1]


def test_log_deny_mode_logs_only_denials(make_broker: BrokerFactory, probe: ProbeFactory) -> None:
    broker = make_broker(extra_lines=["plugin_opt_log deny"])
    sensor = probe(broker, "Sensor1")
    assert not sensor.connect().is_failure
    assert sensor.subscribe("commands/Sensor1", "admin/#") == [1, SUB_REFUSED]
    assert [(d.verdict, d.resource) for d in broker.decisions()] == [("deny", "mqtt:topicfilter:admin/#")]
