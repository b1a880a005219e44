"""The device-group policy compiler: selection rules, resource globs and substitution, errors, the rules file.

Pure Python and fast; the broker tests prove the C plugin reads what this writes and decides the same.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.authplugin.broker import Decision, parse_decisions, plugin_conf_lines, startup_status
from harness.core.authplugin.rules import (
    THING_VAR,
    ThingTerm,
    compile_policy,
    compile_rules,
    load_policy,
    parse_selection_rule,
    resource_matches,
)
from harness.errors import InputError

SPEC_EXAMPLE: dict[str, Any] = {
    "deviceGroups": {
        "formatVersion": "2021-03-05",
        "definitions": {"MyDeviceGroup": {"selectionRule": "thingName: MyClientDevice*", "policyName": "P"}},
        "policies": {"P": {
            "AllowConnect": {"operations": ["mqtt:connect"], "resources": ["*"]},
            "AllowPublish": {"operations": ["mqtt:publish"], "resources": ["mqtt:topic:test/topic"]},
            "AllowSubscribe": {"operations": ["mqtt:subscribe"],
                               "resources": ["mqtt:topicfilter:test/topic/response"]},
        }},
    }
}


def test_spec_example_compiles_to_the_documented_rules_file() -> None:
    text = compile_rules(SPEC_EXAMPLE, "spec")
    assert text.splitlines()[1:] == [
        "gg_auth_rules 1",
        "group MyDeviceGroup",
        "# policy P",
        "match prefix:MyClientDevice",
        "allow connect *",
        "allow publish mqtt:topic:test/topic",
        "allow subscribe mqtt:topicfilter:test/topic/response",
        "end",
    ]
    policy = compile_policy(SPEC_EXAMPLE)
    assert policy.allows("MyClientDevice1", "mqtt:connect", "MyClientDevice1")
    assert policy.allows("MyClientDevice1", "mqtt:publish", "test/topic")
    assert not policy.allows("MyClientDevice1", "mqtt:publish", "test/topic/response")
    assert policy.allows("MyClientDevice1", "mqtt:subscribe", "test/topic/response")
    assert not policy.allows("OtherDevice", "mqtt:connect", "OtherDevice")


# -- selection rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "selected", "not_selected"),
    [
        ("thingName: MyClientDevice*", ["MyClientDevice", "MyClientDevice7"], ["myClientDevice1", "My"]),
        ("thingName:Exact", ["Exact"], ["Exact2", "exact"]),
        ("thingName: A OR thingName: B*", ["A", "B", "Bee"], ["AA", "C"]),
        # AND binds tighter: X OR (A* AND AB)
        ("thingName: X OR thingName: A* AND thingName: AB", ["X", "AB"], ["AC", "A"]),
        ("thingName: A* AND thingName: AB OR thingName: X", ["X", "AB"], ["AC"]),
        ("thingName: *", ["anything", "x"], []),
        ("\tthingName:  Dev\\:1 ", ["Dev:1"], ["Dev\\:1", "Dev"]),
        ("thingName: ORbit OR thingName: ANDroid", ["ORbit", "ANDroid"], ["OR"]),
    ],
)
def test_selection_rules(rule: str, selected: list[str], not_selected: list[str]) -> None:
    doc = copy.deepcopy(SPEC_EXAMPLE)
    doc["deviceGroups"]["definitions"]["MyDeviceGroup"]["selectionRule"] = rule
    policy = compile_policy(doc)
    assert [t for t in selected if policy.groups_of(t)] == selected
    assert [t for t in not_selected if policy.groups_of(t)] == []


def test_selection_rule_is_or_of_and_clauses() -> None:
    assert parse_selection_rule("thingName: A AND thingName: B* OR thingName: C") == (
        (ThingTerm("A"), ThingTerm("B", prefix=True)), (ThingTerm("C"),))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "the selection rule is empty"),
        ("thingName:", "expected a thing name after 'thingName:', got end of rule"),
        ("thingname: A", "expected 'thingName:' (keywords are case-sensitive), got 'thingname:'"),
        ("ThingName: A", "expected 'thingName:' (keywords are case-sensitive), got 'ThingName:'"),
        ("A OR thingName: B", "expected 'thingName:', got 'A'"),
        ("thingName: A OR", "ends with an operator"),
        ("thingName: A*B", "expected OR or AND, got 'B'"),
        ("thingName: A or thingName: B", "expected OR or AND, got 'or'"),
        ("thingName: A OR OR thingName: B", "expected 'thingName:', got 'OR'"),
        ("thingName: A thingName: B", "expected OR or AND, got 'thingName:'"),
        ("thingName: A.B", "unexpected '.'"),
        ("thingName: OR", "expected a thing name after 'thingName:', got 'OR'"),
    ],
)
def test_selection_rule_syntax_errors_name_the_field(rule: str, message: str) -> None:
    doc = copy.deepcopy(SPEC_EXAMPLE)
    doc["deviceGroups"]["definitions"]["MyDeviceGroup"]["selectionRule"] = rule
    with pytest.raises(InputError) as exc:
        compile_policy(doc, "policy.json")
    text = str(exc.value)
    assert text.startswith("policy.json: field 'deviceGroups.definitions.MyDeviceGroup.selectionRule': ")
    assert message in text and "rule syntax: thingName: <name>[*]" in text


# -- resources -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("*", "mqtt:topic:a/b", True),
        ("mqtt:topic:a/*", "mqtt:topic:a/b/c", True),  # '*' crosses '/'
        ("mqtt:topic:a/*", "mqtt:topic:a/", True),
        ("mqtt:topic:a/*", "mqtt:topic:a", False),
        ("mqtt:topic:a/*/c", "mqtt:topic:a/x/y/c", True),
        ("mqtt:topic:*a*b", "mqtt:topic:xaxxab", True),  # needs backtracking
        ("mqtt:topic:*a*b", "mqtt:topic:xaxxa", False),
        ("mqtt:topicfilter:a/#", "mqtt:topicfilter:a/+", False),  # MQTT wildcards are literal here
        ("mqtt:topicfilter:a/+", "mqtt:topicfilter:a/+", True),
        (f"mqtt:topic:t/{THING_VAR}/x", "mqtt:topic:t/Dev1/x", True),
        (f"mqtt:topic:t/{THING_VAR}/x", "mqtt:topic:t/Dev2/x", False),
        (f"mqtt:topic:t/{THING_VAR}", "mqtt:topic:t/Dev1x", False),
        (f"mqtt:topic:*/{THING_VAR}*", "mqtt:topic:a/Dev1/Dev1/b", True),
        (f"mqtt:topic:{THING_VAR}", f"mqtt:topic:{THING_VAR}", False),  # the variable is not literal text
    ],
)
def test_resource_globs_and_thing_name_substitution(pattern: str, text: str, expected: bool) -> None:
    assert resource_matches(pattern, text, "Dev1") is expected


def test_a_star_in_a_thing_name_is_not_a_wildcard() -> None:
    assert not resource_matches(f"mqtt:topic:{THING_VAR}/x", "mqtt:topic:Devabc/x", "Dev*")
    assert resource_matches(f"mqtt:topic:{THING_VAR}/x", "mqtt:topic:Dev*/x", "Dev*")


def test_a_thing_in_several_groups_gets_every_groups_statements() -> None:
    doc = copy.deepcopy(SPEC_EXAMPLE)
    dg = doc["deviceGroups"]
    dg["definitions"]["Extra"] = {"selectionRule": "thingName: MyClientDevice1", "policyName": "Q"}
    dg["policies"]["Q"] = {"S": {"operations": ["mqtt:publish"], "resources": ["mqtt:topic:extra"]}}
    policy = compile_policy(doc)
    assert policy.groups_of("MyClientDevice1") == ["MyDeviceGroup", "Extra"]
    assert policy.authorize("MyClientDevice1", "mqtt:publish", "mqtt:topic:extra") == "Extra"
    assert policy.authorize("MyClientDevice1", "mqtt:publish", "mqtt:topic:test/topic") == "MyDeviceGroup"
    assert policy.authorize("MyClientDevice2", "mqtt:publish", "mqtt:topic:extra") is None


# -- validation ------------------------------------------------------------------------------------------
def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()
_P = "deviceGroups.policies.P"


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (f"{_P}.AllowConnect.operations", ["mqtt:pub"], f"{_P}.AllowConnect.operations[0]",
         "unknown operation 'mqtt:pub'; allowed: mqtt:connect, mqtt:publish, mqtt:subscribe"),
        ("deviceGroups.formatVersion", "2020-01-01", "deviceGroups.formatVersion",
         "unknown format version '2020-01-01'; allowed: 2021-03-05"),
        ("deviceGroups.definitions.MyDeviceGroup.policyName", "Missing",
         "deviceGroups.definitions.MyDeviceGroup.policyName",
         "no policy named 'Missing'; policies defined in deviceGroups.policies: 'P'"),
        ("deviceGroups.definitions.MyDeviceGroup.policyName", _DELETE,
         "deviceGroups.definitions.MyDeviceGroup.policyName", "required field is missing"),
        ("deviceGroups.definitions.MyDeviceGroup.selectionrule", "x",
         "deviceGroups.definitions.MyDeviceGroup.selectionrule",
         "unknown field; allowed fields here: selectionRule, policyName"),
        (f"{_P}.AllowConnect.effect", "DENY", f"{_P}.AllowConnect.effect", "allowed: ALLOW"),
        (f"{_P}.AllowConnect.resource", ["*"], f"{_P}.AllowConnect.resource",
         "unknown field; allowed fields here: operations, resources, statementDescription, effect"),
        (f"{_P}.AllowConnect.resources", "*", f"{_P}.AllowConnect.resources",
         "must be a non-empty list of strings"),
        (f"{_P}.AllowConnect.resources", [], f"{_P}.AllowConnect.resources", "must be a non-empty list"),
        (f"{_P}.AllowPublish.resources", ["mqtt:topic:${iot:ClientId}"], f"{_P}.AllowPublish.resources[0]",
         f"unknown policy variable in 'mqtt:topic:${{iot:ClientId}}'; supported: {THING_VAR}"),
        (f"{_P}.AllowPublish.resources", ["mqtt:topics:a"], f"{_P}.AllowPublish.resources[0]",
         "unknown resource type 'topics' in 'mqtt:topics:a'; allowed: mqtt:clientId:, mqtt:topic:, "
         "mqtt:topicfilter:"),
        (f"{_P}.AllowPublish.resources", ["test/topic"], f"{_P}.AllowPublish.resources[0]",
         "must be '*' or start with 'mqtt:'"),
        (f"{_P}.AllowPublish.resources", ["mqtt:topic:a\nb"], f"{_P}.AllowPublish.resources[0]",
         "free of control characters"),
        ("deviceGroups.policies", [], "deviceGroups.policies", "must be a mapping of policies, got list"),
        ("deviceGroups.definition", {}, "deviceGroups.definition",
         "unknown field; allowed fields here: formatVersion, definitions, policies"),
        ("deviceGroups.definitions", _DELETE, "deviceGroups.definitions", "required field is missing"),
    ],
)
def test_bad_fields_name_the_path_and_the_allowed_values(path: str, value: Any, field: str,
                                                         message: str) -> None:
    doc = copy.deepcopy(SPEC_EXAMPLE)
    _set(doc, path, value)
    with pytest.raises(InputError) as exc:
        compile_policy(doc, "cda.json")
    text = str(exc.value)
    assert text.startswith(f"cda.json: field '{field}': ") and message in text, text


def test_missing_device_groups_and_other_component_keys() -> None:
    with pytest.raises(InputError, match=r"field '\(top level\).deviceGroups': required field is missing"):
        compile_policy({"certificateAuthority": {}})
    # The component's other settings are not this compiler's business.
    assert compile_policy({**SPEC_EXAMPLE, "security": {"clientDeviceTrustDurationMinutes": 1}}).groups


def test_write_is_atomic_and_load_reads_json_and_yaml(tmp_path: Path) -> None:
    src = tmp_path / "policy.json"
    src.write_text(json.dumps(SPEC_EXAMPLE))
    policy = load_policy(src)
    out = policy.write(tmp_path / "rules" / "gg_auth.rules")
    assert out.read_text() == policy.rules_text() and str(src) in out.read_text().splitlines()[0]
    assert [p.name for p in out.parent.iterdir()] == ["gg_auth.rules"]
    yml = tmp_path / "policy.yaml"
    yml.write_text("deviceGroups:\n  formatVersion: '2021-03-05'\n  definitions: {}\n  policies: {}\n")
    assert load_policy(yml).groups == ()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match=r"bad\.json: not valid JSON"):
        load_policy(tmp_path / "bad.json")
    with pytest.raises(InputError, match="cannot read device-group policy"):
        load_policy(tmp_path / "absent.json")


# -- broker contract -------------------------------------------------------------------------------------
def test_plugin_conf_lines() -> None:
    assert plugin_conf_lines("/p/gg_auth.so", "/r/rules") == [
        "plugin /p/gg_auth.so", "plugin_opt_rules /r/rules"]
    assert plugin_conf_lines("/p.so", "/r", ["no_acl", "no_client_id_check"], log="deny")[2:] == [
        "plugin_opt_faults no_acl,no_client_id_check", "plugin_opt_log deny"]
    with pytest.raises(InputError, match=r"unknown gg_auth fault.*'no_tls'.*allowed: no_client_id_check"):
        plugin_conf_lines("/p.so", "/r", ["no_tls"])


def test_parse_decisions_reads_plugin_log_lines() -> None:
    log = ("1700000000: New connection from 127.0.0.1:1 on port 8883.\n"
           "1700000000: gg_auth: deny publish thing=Dev1 client=Dev1 reason=no-policy "
           "resource=mqtt:topic:a b\n"
           "1700000001: gg_auth: allow connect thing=Dev1 client=Dev1 reason=group:G "
           "resource=mqtt:clientId:Dev1\n")
    assert parse_decisions(log) == [
        Decision("deny", "publish", "Dev1", "Dev1", "no-policy", "mqtt:topic:a b"),
        Decision("allow", "connect", "Dev1", "Dev1", "group:G", "mqtt:clientId:Dev1"),
    ]


def test_startup_status_only_reads_the_latest_start() -> None:
    first = ("1: mosquitto version 2.0.11 starting\n1: gg_auth: error: rules file /r line 2: x\n"
             "1: Error: Plugin returned 3 when initialising.\n")
    assert startup_status(first) == ("failed", "gg_auth: error: rules file /r line 2: x\n"
                                               "Error: Plugin returned 3 when initialising.")
    assert startup_status(first + "2: mosquitto version 2.0.11 starting\n") == ("starting", "")
    second = "2: mosquitto version 2.0.11 starting\n2: mosquitto version 2.0.11 running\n"
    assert startup_status(first + second) == ("running", "")
