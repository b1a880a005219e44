"""deviceGroups client-device policies: validation naming the field, evaluation like client-device-auth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cloud.policy import DeviceGroupPolicy, parse_selection_rule
from harness.errors import InputError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "provisioning"
SPEC_EXAMPLE: dict[str, Any] = {
    "deviceGroups": {
        "formatVersion": "2021-03-05",
        "definitions": {"MyDeviceGroup": {"selectionRule": "thingName: MyClientDevice*", "policyName": "P"}},
        "policies": {
            "P": {
                "AllowConnect": {"operations": ["mqtt:connect"], "resources": ["*"]},
                "AllowPublish": {"operations": ["mqtt:publish"], "resources": ["mqtt:topic:test/topic"]},
                "AllowSubscribe": {
                    "operations": ["mqtt:subscribe"],
                    "resources": ["mqtt:topicfilter:test/topic/response"],
                },
            }
        },
    }
}


def test_spec_example_evaluates() -> None:
    policy = DeviceGroupPolicy.parse(SPEC_EXAMPLE)
    assert policy.groups_for("MyClientDevice7") == ["MyDeviceGroup"] and policy.groups_for("Other") == []
    assert policy.is_authorized("MyClientDevice7", "mqtt:connect", "mqtt:clientId:MyClientDevice7")
    assert policy.is_authorized("MyClientDevice7", "mqtt:publish", "mqtt:topic:test/topic")
    assert not policy.is_authorized("MyClientDevice7", "mqtt:publish", "mqtt:topic:test/other")
    assert policy.is_authorized("MyClientDevice7", "mqtt:subscribe", "mqtt:topicfilter:test/topic/response")
    assert not policy.is_authorized("MyClientDevice7", "mqtt:subscribe", "mqtt:topicfilter:test/#")
    assert not policy.is_authorized("Other", "mqtt:connect", "mqtt:clientId:Other")  # default deny


def test_fixture_policy_variables_and_or_rules() -> None:
    policy = DeviceGroupPolicy.parse(json.loads((FIXTURES / "client-device-policy.json").read_text()))
    assert policy.is_authorized("dev-0001", "mqtt:connect", "mqtt:clientId:dev-0001")
    assert not policy.is_authorized("dev-0001", "mqtt:connect", "mqtt:clientId:dev-0002")
    assert policy.is_authorized("MyClientDeviceX", "mqtt:connect", "mqtt:clientId:MyClientDeviceX")


def test_selection_rules() -> None:
    rule = parse_selection_rule("thingName: a* AND thingName: *  OR thingName: exact")
    assert rule.clauses == (("a*", "*"), ("exact",))
    assert rule.matches("abc") and rule.matches("exact") and not rule.matches("exactly")
    assert parse_selection_rule(r"thingName:site\:1*").matches("site:1-x")


@pytest.mark.parametrize(
    ("path", "value", "pattern"),
    [
        (
            ["formatVersion"],
            "2020-01-01",
            r"deviceGroups\.formatVersion: unknown value '2020-01-01'; allowed values: 2021",
        ),
        (
            ["definitions", "MyDeviceGroup", "policyName"],
            "Q",
            r"deviceGroups\.definitions\.MyDeviceGroup\.policyName: no policy named 'Q'.*allowed values: P",
        ),
        (
            ["definitions", "MyDeviceGroup", "selectionRule"],
            "thingName: a OR",
            r"deviceGroups\.definitions\.MyDeviceGroup\.selectionRule: expected 'thingName:'",
        ),
        (
            ["definitions", "MyDeviceGroup", "selectionRule"],
            "name: a",
            r"selectionRule: expected 'thingName:' at 'name'",
        ),
        (
            ["policies", "P", "AllowPublish", "operations"],
            ["mqtt:publsh"],
            r"deviceGroups\.policies\.P\.AllowPublish\.operations\[0\]: unknown operation 'mqtt:publsh'; "
            r"allowed values: mqtt:connect, mqtt:publish, mqtt:subscribe",
        ),
        (
            ["policies", "P", "AllowPublish", "resources"],
            ["topic:x"],
            r"deviceGroups\.policies\.P\.AllowPublish\.resources\[0\]: invalid resource 'topic:x'",
        ),
        (
            ["policies", "P", "AllowPublish", "resources"],
            ["mqtt:topic:${iot:ClientId}"],
            r"unknown policy variable \$\{iot:ClientId\}; "
            r"allowed values: \$\{iot:Connection\.Thing\.ThingName\}",
        ),
        (["policies", "P", "AllowPublish", "effect"], "DENY", r"AllowPublish\.effect: unknown value 'DENY'"),
        (["policies", "P", "AllowPublish", "action"], ["x"], r"AllowPublish\.action: unknown field"),
    ],
)
def test_policy_errors_name_the_field(path: list[str], value: object, pattern: str) -> None:
    doc = json.loads(json.dumps(SPEC_EXAMPLE))
    target = doc["deviceGroups"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InputError, match=pattern):
        DeviceGroupPolicy.parse(doc, "policy.json")
