"""Provisioning templates in the seed-001 (CDF greengrass2-provisioning) JSON format.

``Parameters``, ``Resources`` of type ``AWS::IoT::Thing`` / ``AWS::IoT::Certificate`` / ``AWS::IoT::Policy``
with ``Ref`` and ``Fn::Join`` values, and the ``CDF`` options ``createDeviceCertificate`` and
``attachAdditionalPolicies``. A template is validated once when loaded; resolving it against one device's
parameters is cheap, so bulk tasks can resolve thousands.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cloud.validation import (
    check_keys,
    check_thing_name,
    expect_bool,
    expect_list,
    expect_object,
    expect_str,
    fail,
    join,
    load_json_file,
)

THING = "AWS::IoT::Thing"
CERTIFICATE = "AWS::IoT::Certificate"
POLICY = "AWS::IoT::Policy"
RESOURCE_TYPES = (CERTIFICATE, POLICY, THING)
PARAMETER_TYPES = ("Number", "String")
OVERRIDE_VALUES = ("DO_NOTHING", "FAIL", "MERGE", "REPLACE")
TEMPLATE_CERT_STATUSES = ("ACTIVE", "INACTIVE")
CDF_OPTIONS = ("attachAdditionalPolicies", "createDeviceCertificate")
TOP_LEVEL = ("CDF", "Description", "Parameters", "Resources")
FUNCTIONS = ("Fn::Join", "Ref")

_PROPERTIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # type: (allowed properties, allowed OverrideSettings keys)
    THING: (
        ("AttributePayload", "ThingGroups", "ThingName", "ThingTypeName"),
        ("AttributePayload", "ThingGroups", "ThingTypeName"),
    ),
    CERTIFICATE: (("CACertificatePem", "CertificateId", "CertificatePem", "Status"), ("Status",)),
    POLICY: (("PolicyDocument", "PolicyName"), ()),
}

DEFAULT_CORE_TEMPLATE = "greengrass2-core"
DEFAULT_DEVICE_TEMPLATE = "greengrass2-client-device"


def _cert_template(policy_name: str, extra_policies: list[str]) -> dict[str, Any]:
    return {
        "Parameters": {
            "ThingName": {"Type": "String"},
            "CertificatePem": {"Type": "String"},
            "CaCertificatePem": {"Type": "String"},
        },
        "Resources": {
            "thing": {
                "Type": THING,
                "Properties": {"ThingName": {"Ref": "ThingName"}},
                "OverrideSettings": {"ThingTypeName": "REPLACE"},
            },
            "certificate": {
                "Type": CERTIFICATE,
                "Properties": {
                    "CACertificatePem": {"Ref": "CaCertificatePem"},
                    "CertificatePem": {"Ref": "CertificatePem"},
                    "Status": "ACTIVE",
                },
                "OverrideSettings": {"Status": "REPLACE"},
            },
            "policy": {"Type": POLICY, "Properties": {"PolicyName": policy_name}},
        },
        "CDF": {
            "createDeviceCertificate": True,
            "attachAdditionalPolicies": [{"name": n} for n in extra_policies],
        },
    }


BUILTIN_TEMPLATES: dict[str, dict[str, Any]] = {
    # the seed's example core template, verbatim in meaning
    DEFAULT_CORE_TEMPLATE: _cert_template("CDFGreengrass2CorePolicy", ["myTokenExchangeRoleAliasPolicy"]),
    DEFAULT_DEVICE_TEMPLATE: _cert_template("CDFGreengrass2ClientDevicePolicy", []),
}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str | None
    allowed_values: tuple[str, ...] | None


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: dict[str, Any]
    override_settings: dict[str, str]


@dataclass(frozen=True)
class PolicySpec:
    """A policy to attach to the certificate; ``document`` None means 'attach the existing one by name'."""

    name: str
    document: Any


@dataclass(frozen=True)
class ResolvedResources:
    """What applying a template to one device's parameters creates."""

    thing_name: str
    thing_type: str | None
    attributes: dict[str, str]
    thing_groups: tuple[str, ...]
    has_certificate: bool
    certificate_status: str
    certificate_pem: str | None
    policies: tuple[PolicySpec, ...]


@dataclass(frozen=True)
class ProvisioningTemplate:
    name: str
    source: str | None
    body: dict[str, Any]
    parameters: dict[str, Parameter]
    resources: tuple[Resource, ...]
    create_device_certificate: bool
    additional_policies: tuple[str, ...]

    @classmethod
    def load(cls, path: Path, name: str | None = None) -> ProvisioningTemplate:
        return cls.parse(load_json_file(path), name or path.stem, source=str(path))

    @classmethod
    def builtin(cls, name: str) -> ProvisioningTemplate:
        return cls.parse(copy.deepcopy(BUILTIN_TEMPLATES[name]), name, source=f"<built-in {name}>")

    @classmethod
    def parse(cls, body: object, name: str, source: str | None = None) -> ProvisioningTemplate:
        """Validate the whole template; every error names ``source`` and the field path."""
        doc = expect_object(body, source, "")
        check_keys(doc, source, "", allowed=TOP_LEVEL, required=["Resources"])
        parameters = _parse_parameters(doc.get("Parameters", {}), source)
        resources: list[Resource] = []
        for logical_id, rbody in expect_object(doc["Resources"], source, "Resources").items():
            resources.append(_parse_resource(logical_id, rbody, parameters, source))
        by_type = {t: [r for r in resources if r.type == t] for t in RESOURCE_TYPES}
        if len(by_type[THING]) != 1:
            fail(
                source, "Resources", f"exactly one {THING} resource is required, found {len(by_type[THING])}"
            )
        if len(by_type[CERTIFICATE]) > 1:
            fail(source, "Resources", f"at most one {CERTIFICATE} resource is allowed")
        create_cert = False
        additional: list[str] = []
        if "CDF" in doc:
            cdf = expect_object(doc["CDF"], source, "CDF")
            check_keys(cdf, source, "CDF", allowed=CDF_OPTIONS)
            if "createDeviceCertificate" in cdf:
                create_cert = expect_bool(
                    cdf["createDeviceCertificate"], source, "CDF.createDeviceCertificate"
                )
            for i, entry in enumerate(
                expect_list(cdf.get("attachAdditionalPolicies", []), source, "CDF.attachAdditionalPolicies")
            ):
                epath = join("CDF.attachAdditionalPolicies", i)
                check_keys(
                    expect_object(entry, source, epath), source, epath, allowed=["name"], required=["name"]
                )
                additional.append(expect_str(entry["name"], source, join(epath, "name")))
        if create_cert and not by_type[CERTIFICATE]:
            fail(
                source, "CDF.createDeviceCertificate", f"true needs an {CERTIFICATE} resource to register it"
            )
        if (by_type[POLICY] or additional) and not by_type[CERTIFICATE]:
            fail(
                source, "Resources", f"policies are attached to a certificate: add an {CERTIFICATE} resource"
            )
        if by_type[CERTIFICATE] and not create_cert:
            cert = by_type[CERTIFICATE][0]
            if "CertificatePem" not in cert.properties:
                fail(
                    source,
                    join(join("Resources", cert.logical_id), "Properties.CertificatePem"),
                    "required unless CDF.createDeviceCertificate is true",
                )
        return cls(
            name=name,
            source=source,
            body=doc,
            parameters=parameters,
            resources=tuple(resources),
            create_device_certificate=create_cert,
            additional_policies=tuple(additional),
        )

    def check_parameters(self, values: Mapping[str, Any], source: str | None, path: str) -> None:
        """Reject parameters the template does not declare (the usual typo) before any work is done."""
        for key, value in values.items():
            if key not in self.parameters:
                fail(
                    source,
                    join(path, key),
                    f"template {self.name!r} has no such parameter",
                    sorted(self.parameters),
                )
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                fail(source, join(path, key), "expected a string or a number")

    def resolve(
        self, values: Mapping[str, Any], *, source: str | None = None, path: str = "provisioningParameters"
    ) -> ResolvedResources:
        """Apply the template to one device's parameters (generated certificates are filled in later)."""
        self.check_parameters(values, source, path)
        params: dict[str, str | None] = {}
        for name, spec in self.parameters.items():
            value = values.get(name, spec.default)
            text = None if value is None else str(value)
            if text is not None and spec.allowed_values is not None and text not in spec.allowed_values:
                fail(source, join(path, name), f"unknown value {text!r}", spec.allowed_values)
            params[name] = text
        if self.create_device_certificate:
            # the certificate is generated for the device; Refs to its PEM are satisfied by that
            for generated in ("CertificatePem", "CaCertificatePem"):
                if generated in params and params[generated] is None:
                    params[generated] = ""

        def prop(res: Resource, key: str) -> Any:
            return _evaluate(
                res.properties[key],
                params,
                source,
                join(join(join("Resources", res.logical_id), "Properties"), key),
                path,
            )

        thing = next(r for r in self.resources if r.type == THING)
        thing_name = check_thing_name(
            prop(thing, "ThingName"),
            source,
            join(join("Resources", thing.logical_id), "Properties.ThingName"),
        )
        thing_type = str(prop(thing, "ThingTypeName")) if "ThingTypeName" in thing.properties else None
        attributes: dict[str, str] = {}
        if "AttributePayload" in thing.properties:
            payload = prop(thing, "AttributePayload")
            attributes = {str(k): str(v) for k, v in payload.items()}
        groups: tuple[str, ...] = ()
        if "ThingGroups" in thing.properties:
            groups = tuple(str(g) for g in prop(thing, "ThingGroups"))
        cert = next((r for r in self.resources if r.type == CERTIFICATE), None)
        status = "ACTIVE"
        cert_pem: str | None = None
        if cert is not None:
            if "Status" in cert.properties:
                status = str(prop(cert, "Status"))
                if status not in TEMPLATE_CERT_STATUSES:
                    fail(
                        self.source if isinstance(cert.properties["Status"], str) else source,
                        join(join("Resources", cert.logical_id), "Properties.Status"),
                        f"unknown value {status!r}",
                        TEMPLATE_CERT_STATUSES,
                    )
            if not self.create_device_certificate:
                cert_pem = str(prop(cert, "CertificatePem"))
        policies: list[PolicySpec] = []
        for res in self.resources:
            if res.type != POLICY:
                continue
            document = prop(res, "PolicyDocument") if "PolicyDocument" in res.properties else None
            if isinstance(document, str):
                try:
                    document = json.loads(document)
                except json.JSONDecodeError as exc:
                    fail(
                        self.source,
                        join(join("Resources", res.logical_id), "Properties.PolicyDocument"),
                        f"not valid JSON: {exc.msg}",
                    )
            name = (
                str(prop(res, "PolicyName"))
                if "PolicyName" in res.properties
                else f"{self.name}-{res.logical_id}"
            )
            policies.append(PolicySpec(name, document))
        policies.extend(PolicySpec(n, None) for n in self.additional_policies)
        return ResolvedResources(
            thing_name=thing_name,
            thing_type=thing_type,
            attributes=attributes,
            thing_groups=groups,
            has_certificate=cert is not None,
            certificate_status=status,
            certificate_pem=cert_pem,
            policies=tuple(policies),
        )


def _parse_parameters(raw: object, source: str | None) -> dict[str, Parameter]:
    out: dict[str, Parameter] = {}
    for name, body in expect_object(raw, source, "Parameters").items():
        path = join("Parameters", name)
        spec = expect_object(body, source, path)
        check_keys(
            spec, source, path, allowed=["AllowedValues", "Default", "Description", "Type"], required=["Type"]
        )
        ptype = spec["Type"]
        if ptype not in PARAMETER_TYPES:
            fail(source, join(path, "Type"), f"unknown value {ptype!r}", PARAMETER_TYPES)
        default = spec.get("Default")
        if default is not None and (not isinstance(default, str | int | float) or isinstance(default, bool)):
            fail(source, join(path, "Default"), "expected a string or a number")
        allowed = None
        if "AllowedValues" in spec:
            allowed = tuple(
                str(v)
                for v in expect_list(
                    spec["AllowedValues"], source, join(path, "AllowedValues"), non_empty=True
                )
            )
        out[name] = Parameter(name, ptype, None if default is None else str(default), allowed)
    return out


def _parse_resource(
    logical_id: str, body: object, parameters: Mapping[str, Parameter], source: str | None
) -> Resource:
    path = join("Resources", logical_id)
    spec = expect_object(body, source, path)
    check_keys(
        spec,
        source,
        path,
        allowed=["OverrideSettings", "Properties", "Type"],
        required=["Type", "Properties"],
    )
    rtype = spec["Type"]
    if rtype not in RESOURCE_TYPES:
        fail(source, join(path, "Type"), f"unknown resource type {rtype!r}", RESOURCE_TYPES)
    allowed_props, allowed_overrides = _PROPERTIES[rtype]
    props = expect_object(spec["Properties"], source, join(path, "Properties"))
    required = {THING: ["ThingName"], CERTIFICATE: [], POLICY: []}[rtype]
    check_keys(props, source, join(path, "Properties"), allowed=allowed_props, required=required)
    if rtype == POLICY and not ({"PolicyName", "PolicyDocument"} & set(props)):
        fail(source, join(path, "Properties"), "needs PolicyName or PolicyDocument")
    if rtype == CERTIFICATE and "CertificateId" in props:
        fail(
            source,
            join(path, "Properties.CertificateId"),
            "registering an existing certificate by id is not supported offline; use CertificatePem or "
            "CDF.createDeviceCertificate",
        )
    for key, val in props.items():
        _check_expression(val, parameters, source, join(join(path, "Properties"), key))
    status = props.get("Status")
    if rtype == CERTIFICATE and isinstance(status, str) and status not in TEMPLATE_CERT_STATUSES:
        fail(source, join(path, "Properties.Status"), f"unknown value {status!r}", TEMPLATE_CERT_STATUSES)
    overrides = expect_object(spec.get("OverrideSettings", {}), source, join(path, "OverrideSettings"))
    check_keys(overrides, source, join(path, "OverrideSettings"), allowed=allowed_overrides)
    for key, val in overrides.items():
        if val not in OVERRIDE_VALUES:
            fail(source, join(join(path, "OverrideSettings"), key), f"unknown value {val!r}", OVERRIDE_VALUES)
    return Resource(logical_id, rtype, props, dict(overrides))


def _is_function(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in FUNCTIONS


def _check_expression(
    value: object, parameters: Mapping[str, Parameter], source: str | None, path: str
) -> None:
    if (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)).startswith("Fn::")
        and not _is_function(value)
    ):
        fail(source, join(path, next(iter(value))), "unknown function", FUNCTIONS)
    if _is_function(value):
        assert isinstance(value, dict)
        if "Ref" in value:
            ref = value["Ref"]
            if not isinstance(ref, str) or ref not in parameters:
                fail(source, join(path, "Ref"), f"refers to undeclared parameter {ref!r}", sorted(parameters))
            return
        args = value["Fn::Join"]
        if (
            not isinstance(args, list)
            or len(args) != 2
            or not isinstance(args[0], str)
            or not isinstance(args[1], list)
        ):
            fail(source, join(path, "Fn::Join"), "expected [delimiter, [values...]]")
        for i, item in enumerate(args[1]):
            _check_expression(item, parameters, source, join(join(path, "Fn::Join[1]"), i))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_expression(item, parameters, source, join(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_expression(item, parameters, source, join(path, i))


def _evaluate(
    value: Any, params: Mapping[str, str | None], source: str | None, path: str, param_path: str
) -> Any:
    if _is_function(value):
        if "Ref" in value:
            resolved = params.get(value["Ref"])
            if resolved is None:
                fail(
                    source,
                    join(param_path, value["Ref"]),
                    f"no value given and no Default (needed by {path})",
                )
            return resolved
        delimiter, items = value["Fn::Join"]
        return delimiter.join(str(_evaluate(v, params, source, path, param_path)) for v in items)
    if isinstance(value, dict):
        return {k: _evaluate(v, params, source, join(path, k), param_path) for k, v in value.items()}
    if isinstance(value, list):
        return [_evaluate(v, params, source, join(path, i), param_path) for i, v in enumerate(value)]
    return value
