"""Client-device authorization policies in Greengrass V2's ``deviceGroups`` format.

Validated when stored (errors name the field and the allowed values) and evaluated the way
aws.greengrass.clientdevices.Auth does, so the harness's broker can enforce exactly what a real core would:
selection rules ``thingName: X*`` joined with OR/AND, operations ``mqtt:connect|publish|subscribe``
(or ``mqtt:*``/``*``), resources ``mqtt:clientId:``, ``mqtt:topic:``, ``mqtt:topicfilter:`` with ``*``
wildcards and the ``${iot:Connection.Thing.ThingName}`` variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.cloud.validation import check_keys, expect_list, expect_object, expect_str, fail, join

FORMAT_VERSIONS = ("2021-03-05",)
OPERATIONS = ("mqtt:connect", "mqtt:publish", "mqtt:subscribe", "mqtt:*", "*")
RESOURCE_TYPES = ("clientId", "topic", "topicfilter")
EFFECTS = ("ALLOW",)  # the only effect client-device-auth evaluates
THING_NAME_VARIABLE = "${iot:Connection.Thing.ThingName}"
VARIABLES = (THING_NAME_VARIABLE,)

_TOKEN = re.compile(r"\s*(thingName:|(?:[A-Za-z0-9_-]|\\:)+\*?|\*|\S+)")
_RESOURCE = re.compile(r"^(\*|mqtt:\*|mqtt:(clientId|topic|topicfilter):.+)$")
_VARIABLE = re.compile(r"\$\{[^}]*\}")


@dataclass(frozen=True)
class SelectionRule:
    """OR of AND-clauses of thing-name patterns (a trailing ``*`` is a prefix match, ``*`` alone is all)."""

    text: str
    clauses: tuple[tuple[str, ...], ...]

    def matches(self, thing_name: str) -> bool:
        return any(all(_name_matches(p, thing_name) for p in clause) for clause in self.clauses)


def _name_matches(pattern: str, name: str) -> bool:
    literal = pattern.replace("\\:", ":")
    if literal == "*":
        return True
    if literal.endswith("*"):
        return name.startswith(literal[:-1])
    return name == literal


def parse_selection_rule(text: str, source: str | None = None, path: str = "selectionRule") -> SelectionRule:
    """Parse the client-device-auth rule grammar; AND binds tighter than OR."""
    tokens = [m.group(1) for m in _TOKEN.finditer(text)]
    if not tokens:
        fail(source, path, "empty selection rule; expected e.g. 'thingName: MyDevice*'")
    clauses: list[tuple[str, ...]] = []
    current: list[str] = []
    i = 0
    while True:
        if i >= len(tokens) or tokens[i] != "thingName:":
            found = tokens[i] if i < len(tokens) else "end of rule"
            fail(source, path, f"expected 'thingName:' at {found!r} in {text!r}")
        if (
            i + 1 >= len(tokens)
            or tokens[i + 1] in ("OR", "AND", "thingName:")
            or not re.fullmatch(r"(?:[A-Za-z0-9_-]|\\:)+\*?|\*", tokens[i + 1])
        ):
            found = tokens[i + 1] if i + 1 < len(tokens) else "end of rule"
            fail(
                source,
                path,
                f"expected a thing name pattern after 'thingName:' at {found!r} in {text!r} "
                "(letters, digits, - _ and escaped \\: with an optional trailing *)",
            )
        current.append(tokens[i + 1])
        i += 2
        if i >= len(tokens):
            break
        op = tokens[i]
        if op == "OR":
            clauses.append(tuple(current))
            current = []
        elif op != "AND":
            fail(source, path, f"unexpected {op!r} in {text!r}", ["OR", "AND"])
        i += 1
    clauses.append(tuple(current))
    return SelectionRule(text=text, clauses=tuple(clauses))


@dataclass(frozen=True)
class Statement:
    name: str
    operations: tuple[str, ...]
    resources: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class GroupDefinition:
    name: str
    rule: SelectionRule
    policy_name: str


@dataclass(frozen=True)
class DeviceGroupPolicy:
    """A validated ``deviceGroups`` configuration."""

    format_version: str
    definitions: tuple[GroupDefinition, ...]
    policies: dict[str, tuple[Statement, ...]]
    document: dict[str, Any]

    @classmethod
    def parse(cls, document: object, source: str | None = None) -> DeviceGroupPolicy:
        """Accept ``{"deviceGroups": {...}}`` (as in the component configuration) or the inner object."""
        doc = expect_object(document, source, "")
        base = ""
        if "deviceGroups" in doc:
            check_keys(doc, source, "", allowed=["deviceGroups"])
            base = "deviceGroups"
            inner = expect_object(doc["deviceGroups"], source, base)
        else:
            inner = doc
        check_keys(
            inner,
            source,
            base,
            allowed=["formatVersion", "definitions", "policies"],
            required=["definitions", "policies"],
        )
        version = inner.get("formatVersion", FORMAT_VERSIONS[0])
        if version not in FORMAT_VERSIONS:
            fail(source, join(base, "formatVersion"), f"unknown value {version!r}", FORMAT_VERSIONS)
        policies_path = join(base, "policies")
        policies: dict[str, tuple[Statement, ...]] = {}
        for pname, body in expect_object(inner["policies"], source, policies_path).items():
            ppath = join(policies_path, pname)
            statements = []
            for sname, sbody in expect_object(body, source, ppath).items():
                statements.append(_parse_statement(sname, sbody, source, join(ppath, sname)))
            policies[pname] = tuple(statements)
        defs_path = join(base, "definitions")
        definitions = []
        for gname, body in expect_object(inner["definitions"], source, defs_path).items():
            gpath = join(defs_path, gname)
            gbody = expect_object(body, source, gpath)
            check_keys(
                gbody,
                source,
                gpath,
                allowed=["selectionRule", "policyName"],
                required=["selectionRule", "policyName"],
            )
            rule = parse_selection_rule(
                expect_str(gbody["selectionRule"], source, join(gpath, "selectionRule")),
                source,
                join(gpath, "selectionRule"),
            )
            policy_name = expect_str(gbody["policyName"], source, join(gpath, "policyName"))
            if policy_name not in policies:
                fail(
                    source,
                    join(gpath, "policyName"),
                    f"no policy named {policy_name!r} in {policies_path}",
                    sorted(policies),
                )
            definitions.append(GroupDefinition(gname, rule, policy_name))
        return cls(
            format_version=version,
            definitions=tuple(definitions),
            policies=policies,
            document={"deviceGroups": inner},
        )

    def groups_for(self, thing_name: str) -> list[str]:
        return [d.name for d in self.definitions if d.rule.matches(thing_name)]

    def is_authorized(self, thing_name: str, operation: str, resource: str) -> bool:
        """Does any group the thing belongs to allow ``operation`` on ``resource``? (default deny)"""
        service = operation.split(":", 1)[0]
        for definition in self.definitions:
            if not definition.rule.matches(thing_name):
                continue
            for statement in self.policies[definition.policy_name]:
                if not any(op in (operation, "*", f"{service}:*") for op in statement.operations):
                    continue
                for pattern in statement.resources:
                    if _resource_matches(pattern.replace(THING_NAME_VARIABLE, thing_name), resource):
                        return True
        return False


def _resource_matches(pattern: str, resource: str) -> bool:
    if pattern == resource:
        return True
    if "*" not in pattern:
        return False
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, resource, flags=re.DOTALL) is not None


def _parse_statement(name: str, body: object, source: str | None, path: str) -> Statement:
    sbody = expect_object(body, source, path)
    check_keys(
        sbody,
        source,
        path,
        allowed=["statementDescription", "effect", "operations", "resources"],
        required=["operations", "resources"],
    )
    effect = sbody.get("effect", "ALLOW")
    if effect not in EFFECTS:
        fail(source, join(path, "effect"), f"unknown value {effect!r}", EFFECTS)
    operations = []
    for i, op in enumerate(
        expect_list(sbody["operations"], source, join(path, "operations"), non_empty=True)
    ):
        opath = join(join(path, "operations"), i)
        if expect_str(op, source, opath) not in OPERATIONS:
            fail(source, opath, f"unknown operation {op!r}", OPERATIONS)
        operations.append(op)
    resources = []
    for i, res in enumerate(expect_list(sbody["resources"], source, join(path, "resources"), non_empty=True)):
        rpath = join(join(path, "resources"), i)
        text = expect_str(res, source, rpath)
        for var in _VARIABLE.findall(text):
            if var not in VARIABLES:
                fail(source, rpath, f"unknown policy variable {var}", VARIABLES)
        if not _RESOURCE.match(text):
            fail(
                source,
                rpath,
                f"invalid resource {text!r}: expected '*' or mqtt:<type>:<name> with type one of "
                f"{', '.join(RESOURCE_TYPES)}",
            )
        resources.append(text)
    description = sbody.get("statementDescription", "")
    if not isinstance(description, str):
        fail(source, join(path, "statementDescription"), "expected a string")
    return Statement(
        name=name, operations=tuple(operations), resources=tuple(resources), description=description
    )
