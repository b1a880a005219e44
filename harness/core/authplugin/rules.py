"""Greengrass device-group policies, validated and compiled into the rules file the gg_auth plugin reads.

The broker-side plugin is C running on the target (often an emulated ARM board), so it gets a format it can
parse in a few lines; all the work that needs a JSON parser and good error messages happens here, on the
host. ``DeviceGroupPolicy.authorize`` makes the same decisions as the plugin, so tests and checks can
predict what the core's broker must do.

Input (core-behaviour.md, the ``aws.greengrass.clientdevices.Auth`` configuration)::

    {"deviceGroups": {"formatVersion": "2021-03-05",
      "definitions": {"G": {"selectionRule": "thingName: MyClientDevice* OR thingName: X",
                            "policyName": "P"}},
      "policies": {"P": {"AllowConnect": {"operations": ["mqtt:connect"], "resources": ["*"]}}}}}

Selection rules follow the component's grammar: ``thingName: <name>`` terms, where a name is letters,
digits, ``-``, ``_`` and escaped colons (``\\:``) with an optional trailing ``*`` (or ``*`` alone), joined by
``OR`` and ``AND``; AND binds tighter. Resources are globs where ``*`` matches any run of characters
(``/`` included) and ``${iot:Connection.Thing.ThingName}`` stands for the connecting thing's name.

Rules file (version 1), one directive a line; ``#`` comments and empty lines are ignored::

    gg_auth_rules 1                 first directive: format and version
    group <name>                    opens a device group (the name, rest of the line, is used in logs)
    match <term> [<term>...]        one AND clause; a group's match lines are ORed
                                    term = exact:<thing name> | prefix:<thing name prefix>
    allow <operation> <resource>    operation = connect | publish | subscribe; resource = rest of the line
    end                             closes the group

The plugin evaluates groups in file order: a request is allowed when a group selecting the thing has an
``allow`` line for the operation whose resource matches ``mqtt:clientId:<id>`` (connect),
``mqtt:topic:<topic>`` (publish) or ``mqtt:topicfilter:<filter>`` (subscribe, the literal filter).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import InputError

FORMAT_VERSION = "2021-03-05"
RULES_HEADER = "gg_auth_rules 1"
THING_VAR = "${iot:Connection.Thing.ThingName}"
#: Policy operation -> the plugin's operation keyword and the resource type the operation is checked on.
OPERATIONS: dict[str, tuple[str, str]] = {
    "mqtt:connect": ("connect", "mqtt:clientId:"),
    "mqtt:publish": ("publish", "mqtt:topic:"),
    "mqtt:subscribe": ("subscribe", "mqtt:topicfilter:"),
}
RESOURCE_TYPES = ("clientId", "topic", "topicfilter")
DEVICE_GROUPS_FIELDS = ("formatVersion", "definitions", "policies")
DEFINITION_FIELDS = ("selectionRule", "policyName")
STATEMENT_FIELDS = ("operations", "resources", "statementDescription", "effect")
RULE_SYNTAX = "thingName: <name>[*] [OR|AND thingName: <name>[*]]..."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ThingTerm:
    """One ``thingName:`` term of a selection rule."""

    name: str
    prefix: bool = False

    def matches(self, thing: str) -> bool:
        return thing.startswith(self.name) if self.prefix else thing == self.name

    def rules_token(self) -> str:
        return f"{'prefix' if self.prefix else 'exact'}:{self.name}"


@dataclass(frozen=True)
class Statement:
    """One allowed operation on one resource pattern."""

    operation: str  # a key of OPERATIONS
    resource: str


@dataclass(frozen=True)
class DeviceGroup:
    """A device group with its policy's statements inlined (the plugin has no policy indirection)."""

    name: str
    #: OR of AND clauses: the group selects a thing when every term of some clause matches it.
    selection: tuple[tuple[ThingTerm, ...], ...]
    policy_name: str
    statements: tuple[Statement, ...]

    def selects(self, thing: str) -> bool:
        return any(all(term.matches(thing) for term in clause) for clause in self.selection)


@dataclass(frozen=True)
class DeviceGroupPolicy:
    """A validated deviceGroups configuration."""

    groups: tuple[DeviceGroup, ...]
    source: str = "deviceGroups policy"

    def groups_of(self, thing: str) -> list[str]:
        """Names of the groups that select ``thing``."""
        return [g.name for g in self.groups if g.selects(thing)]

    def authorize(self, thing: str, operation: str, resource: str) -> str | None:
        """The first group that lets ``thing`` do ``operation`` on ``resource``, or None (denied).

        ``resource`` is the full resource string, e.g. ``mqtt:topic:a/b``; the plugin decides the same way.
        """
        if operation not in OPERATIONS:
            raise InputError(f"unknown operation {operation!r}; allowed: {', '.join(OPERATIONS)}")
        for group in self.groups:
            if not group.selects(thing):
                continue
            for st in group.statements:
                if st.operation == operation and resource_matches(st.resource, resource, thing):
                    return group.name
        return None

    def allows(self, thing: str, operation: str, target: str) -> bool:
        """Whether ``thing`` may do ``operation`` on a client id, topic or topic filter ``target``."""
        return self.authorize(thing, operation, OPERATIONS[operation][1] + target) is not None

    def rules_text(self) -> str:
        """The rules file the plugin reads (format in the module docstring)."""
        lines = [f"# gg_auth rules compiled by harness.core.authplugin.rules from {_one_line(self.source)}",
                 RULES_HEADER]
        for group in self.groups:
            lines += [f"group {group.name}", f"# policy {group.policy_name}"]
            lines += ["match " + " ".join(t.rules_token() for t in clause) for clause in group.selection]
            lines += [f"allow {OPERATIONS[st.operation][0]} {st.resource}" for st in group.statements]
            lines.append("end")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        """Write the rules file atomically (a broker starting meanwhile never reads half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.rules_text())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def resource_matches(pattern: str, text: str, thing: str) -> bool:
    """Glob match as the plugin does it: ``*`` matches any run (``/`` too), THING_VAR is ``thing`` literally.

    A port of resource_matches() in gg_auth.c (greedy, backtracking to the last star), kept in step with it
    so Python predictions and broker decisions cannot drift apart.
    """
    p = t = 0
    star_p: int | None = None
    star_t = 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            p += 1
            star_p, star_t = p, t
            continue
        if pattern.startswith(THING_VAR, p):
            if text.startswith(thing, t):
                p += len(THING_VAR)
                t += len(thing)
                continue
        elif p < len(pattern) and pattern[p] == text[t]:
            p += 1
            t += 1
            continue
        if star_p is None:
            return False
        star_t += 1
        p, t = star_p, star_t
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


# -- selection rules ---------------------------------------------------------------------------------
_TOKEN = re.compile(r"thingName:|OR|AND|(?:[A-Za-z0-9_-]|\\:)+\*?|\*")
_NAME = re.compile(r"(?:[A-Za-z0-9_-]|\\:)+\*?|\*")


class _FieldError(Exception):
    """A validation failure at a field path; compile_policy turns it into an InputError naming the source."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _tokens(rule: str, where: str) -> list[tuple[str, int]]:
    """Split like the component's JavaCC lexer: longest match wins, keywords win ties; space/tab/CR skip."""
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(rule):
        if rule[i] in " \t\r":
            i += 1
            continue
        candidates = [m.group(0) for m in (_TOKEN.match(rule, i), _NAME.match(rule, i)) if m]
        if not candidates and rule[i] == ":" and out and out[-1][0].lower() == "thingname":
            got = out[-1][0] + ":"
            raise _FieldError(where, f"syntax error at column {out[-1][1]}: expected 'thingName:' (keywords "
                                     f"are case-sensitive), got {got!r} (rule syntax: {RULE_SYNTAX})")
        if not candidates:
            raise _FieldError(where, f"syntax error at column {i + 1}: unexpected {rule[i]!r} "
                                     f"(rule syntax: {RULE_SYNTAX})")
        token = max(candidates, key=len)
        out.append((token, i + 1))
        i += len(token)
    return out


def _selection(rule: str, where: str) -> tuple[tuple[ThingTerm, ...], ...]:
    tokens = _tokens(rule, where)
    clauses: list[list[ThingTerm]] = [[]]
    expect_term = True
    pos = 0
    while pos < len(tokens):
        token, col = tokens[pos]
        if expect_term:
            if token != "thingName:":
                raise _FieldError(where, f"syntax error at column {col}: expected 'thingName:', "
                                         f"got {token!r} (rule syntax: {RULE_SYNTAX})")
            name = tokens[pos + 1][0] if pos + 1 < len(tokens) else ""
            if not _NAME.fullmatch(name) or name in ("OR", "AND"):
                got = repr(name) if name else "end of rule"
                raise _FieldError(where, f"syntax error after column {col}: expected a thing name after "
                                         f"'thingName:', got {got} (rule syntax: {RULE_SYNTAX})")
            clauses[-1].append(ThingTerm(name.rstrip("*").replace("\\:", ":"), name.endswith("*")))
            pos += 2
            expect_term = False
        else:
            if token == "OR":
                clauses.append([])
            elif token != "AND":
                raise _FieldError(where, f"syntax error at column {col}: expected OR or AND, got {token!r} "
                                         f"(rule syntax: {RULE_SYNTAX})")
            pos += 1
            expect_term = True
    if expect_term:
        what = "is empty" if not tokens else "ends with an operator"
        raise _FieldError(where, f"the selection rule {what} (rule syntax: {RULE_SYNTAX})")
    return tuple(tuple(c) for c in clauses)


def parse_selection_rule(rule: str, where: str = "selectionRule") -> tuple[tuple[ThingTerm, ...], ...]:
    """A selection rule as OR of AND clauses; an ``InputError`` names ``where`` and the column."""
    try:
        return _selection(rule, where)
    except _FieldError as exc:
        raise InputError(str(exc)) from None


# -- validation --------------------------------------------------------------------------------------
def _mapping(value: Any, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _FieldError(where, f"must be {what}, got {type(value).__name__}")
    return value


def _known_fields(value: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in value:
        if key not in allowed:
            raise _FieldError(f"{where}.{key}", f"unknown field; allowed fields here: {', '.join(allowed)}")


def _require(value: Mapping[str, Any], fields: Sequence[str], where: str) -> None:
    for req in fields:
        if req not in value:
            raise _FieldError(f"{where}.{req}", "required field is missing")


def _name(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key or _CONTROL.search(key) or key != key.strip():
        raise _FieldError(where, f"name {key!r} must be a non-empty string without control characters "
                                 "or surrounding spaces")
    return key


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _FieldError(where, f"must be a non-empty list of strings, got {value!r}")
    return value


def _resource(value: str, where: str) -> str:
    if not value or _CONTROL.search(value):
        raise _FieldError(where, f"resource {value!r} must be non-empty and free of control characters")
    for m in re.finditer(r"\$\{", value):
        if not value.startswith(THING_VAR, m.start()):
            raise _FieldError(where, f"unknown policy variable in {value!r}; supported: {THING_VAR}")
    if not (value.startswith("*") or value.startswith("mqtt:")):
        raise _FieldError(where, f"resource {value!r} must be '*' or start with 'mqtt:' "
                                 "(mqtt:clientId:, mqtt:topic:, mqtt:topicfilter:)")
    kind = re.match(r"mqtt:([^:*]*):", value)
    if kind and kind.group(1) not in RESOURCE_TYPES:
        raise _FieldError(where, f"unknown resource type {kind.group(1)!r} in {value!r}; allowed: "
                                 + ", ".join(f"mqtt:{t}:" for t in RESOURCE_TYPES))
    return value


def _statements(policy: Mapping[str, Any], where: str) -> tuple[Statement, ...]:
    out: list[Statement] = []
    for st_name, statement in policy.items():
        st_where = f"{where}.{_name(st_name, where)}"
        statement = _mapping(statement, st_where, "a statement mapping (operations, resources)")
        _known_fields(statement, STATEMENT_FIELDS, st_where)
        _require(statement, ("operations", "resources"), st_where)
        effect = statement.get("effect", "ALLOW")
        if not isinstance(effect, str) or effect.upper() != "ALLOW":
            raise _FieldError(f"{st_where}.effect", f"{effect!r} is not supported; allowed: ALLOW")
        if not isinstance(statement.get("statementDescription", ""), str):
            raise _FieldError(f"{st_where}.statementDescription", "must be a string")
        operations = _strings(statement["operations"], f"{st_where}.operations")
        resources = _strings(statement["resources"], f"{st_where}.resources")
        for i, op in enumerate(operations):
            if op not in OPERATIONS:
                raise _FieldError(f"{st_where}.operations[{i}]",
                                  f"unknown operation {op!r}; allowed: {', '.join(OPERATIONS)}")
        checked = [_resource(r, f"{st_where}.resources[{i}]") for i, r in enumerate(resources)]
        for op in operations:
            for res in checked:
                if Statement(op, res) not in out:
                    out.append(Statement(op, res))
    return tuple(out)


def _device_groups(doc: Any) -> tuple[DeviceGroup, ...]:
    top = _mapping(doc, "(top level)", "a mapping with a 'deviceGroups' field")
    _require(top, ("deviceGroups",), "(top level)")
    where = "deviceGroups"
    dg = _mapping(top["deviceGroups"], where, "a mapping")
    _known_fields(dg, DEVICE_GROUPS_FIELDS, where)
    _require(dg, DEVICE_GROUPS_FIELDS, where)
    if dg["formatVersion"] != FORMAT_VERSION:
        raise _FieldError(f"{where}.formatVersion",
                          f"unknown format version {dg['formatVersion']!r}; allowed: {FORMAT_VERSION}")
    definitions = _mapping(dg["definitions"], f"{where}.definitions", "a mapping of device groups")
    policies = _mapping(dg["policies"], f"{where}.policies", "a mapping of policies")
    statements: dict[str, tuple[Statement, ...]] = {}
    for p_name, policy in policies.items():
        p_where = f"{where}.policies.{_name(p_name, f'{where}.policies')}"
        statements[p_name] = _statements(_mapping(policy, p_where, "a mapping of statements"), p_where)
    groups: list[DeviceGroup] = []
    for g_name, definition in definitions.items():
        g_where = f"{where}.definitions.{_name(g_name, f'{where}.definitions')}"
        definition = _mapping(definition, g_where, "a mapping (selectionRule, policyName)")
        _known_fields(definition, DEFINITION_FIELDS, g_where)
        _require(definition, DEFINITION_FIELDS, g_where)
        for req in DEFINITION_FIELDS:
            if not isinstance(definition[req], str):
                got = type(definition[req]).__name__
                raise _FieldError(f"{g_where}.{req}", f"must be a string, got {got}")
        selection = _selection(definition["selectionRule"], f"{g_where}.selectionRule")
        policy_name = definition["policyName"]
        if policy_name not in statements:
            known = ", ".join(map(repr, statements)) or "none"
            raise _FieldError(f"{g_where}.policyName", f"no policy named {policy_name!r}; "
                                                       f"policies defined in {where}.policies: {known}")
        groups.append(DeviceGroup(g_name, selection, policy_name, statements[policy_name]))
    return tuple(groups)


def compile_policy(doc: Mapping[str, Any], source: str = "deviceGroups policy") -> DeviceGroupPolicy:
    """Validate a deviceGroups configuration.

    An ``InputError`` names ``source``, the field path and the allowed values, as a bad device profile
    does. Keys beside ``deviceGroups`` (the component's other settings) are ignored.
    """
    try:
        return DeviceGroupPolicy(_device_groups(doc), source)
    except _FieldError as exc:
        raise InputError(f"{source}: field '{exc.field}': {exc.message}") from None


def load_policy(path: Path) -> DeviceGroupPolicy:
    """Read a policy file (JSON, or YAML as a Greengrass configuration may be written) and compile it."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read device-group policy: {exc.strerror}") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    return compile_policy(doc, str(path))


def compile_rules(doc: Mapping[str, Any], source: str = "deviceGroups policy") -> str:
    """The rules-file text for a deviceGroups configuration (validated as ``compile_policy`` does)."""
    return compile_policy(doc, source).rules_text()


def _one_line(text: str) -> str:
    return _CONTROL.sub("?", text)
