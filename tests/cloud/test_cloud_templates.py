"""Provisioning templates and task requests: the seed-001 format, and errors that name file, field, values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cloud.templates import BUILTIN_TEMPLATES, ProvisioningTemplate
from harness.errors import InputError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "provisioning"


def test_fixture_templates_match_builtins() -> None:
    for name, body in BUILTIN_TEMPLATES.items():
        assert json.loads((FIXTURES / f"{name}.json").read_text()) == body


def test_seed_core_template_resolves() -> None:
    tmpl = ProvisioningTemplate.load(FIXTURES / "greengrass2-core.json")
    assert tmpl.name == "greengrass2-core" and tmpl.create_device_certificate
    resolved = tmpl.resolve({"ThingName": "MyCore"})
    assert resolved.thing_name == "MyCore" and resolved.has_certificate
    assert [p.name for p in resolved.policies] == [
        "CDFGreengrass2CorePolicy",
        "myTokenExchangeRoleAliasPolicy",
    ]


def test_parameters_defaults_allowed_values_and_functions() -> None:
    tmpl = ProvisioningTemplate.load(FIXTURES / "client-device-own-certificate.json")
    resolved = tmpl.resolve({"ThingName": "d1", "CertificatePem": "PEM"})
    assert resolved.attributes == {"site": "lab"} and resolved.thing_groups == ("site-lab",)
    assert resolved.certificate_pem == "PEM" and resolved.policies[0].document is not None
    with pytest.raises(
        InputError, match=r"provisioningParameters\.Site: unknown value 'moon'; allowed values: lab, field"
    ):
        tmpl.resolve({"ThingName": "d1", "CertificatePem": "PEM", "Site": "moon"})
    with pytest.raises(InputError, match=r"provisioningParameters\.CertificatePem: no value given"):
        tmpl.resolve({"ThingName": "d1"})
    with pytest.raises(
        InputError,
        match=r"provisioningParameters\.Colour: template .* has no such parameter; "
        r"allowed values: CertificatePem, Site, ThingName",
    ):
        tmpl.resolve({"ThingName": "d1", "CertificatePem": "PEM", "Colour": "red"})


@pytest.mark.parametrize(
    ("fixture", "pattern"),
    [
        (
            "bad-certificate-status.json",
            r"bad-certificate-status\.json: Resources\.certificate\.Properties\.Status: "
            r"unknown value 'ENABLED'; allowed values: ACTIVE, INACTIVE",
        ),
        (
            "bad-resource-type.json",
            r"bad-resource-type\.json: Resources\.thing\.Type: unknown resource type 'AWS::IoT::Thingy'; "
            r"allowed values: AWS::IoT::Certificate, AWS::IoT::Policy, AWS::IoT::Thing",
        ),
        (
            "bad-cdf-option.json",
            r"bad-cdf-option\.json: CDF\.createDeviceCertficate: unknown field; "
            r"allowed values: attachAdditionalPolicies, createDeviceCertificate",
        ),
    ],
)
def test_seeded_defects_name_file_field_and_values(fixture: str, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        tmpl = ProvisioningTemplate.load(FIXTURES / fixture)
        tmpl.resolve({"ThingName": "x"})  # Status is only known once resolved


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (
            lambda t: t["Resources"]["thing"]["Properties"].update(ThingName={"Ref": "Nope"}),
            r"Resources\.thing\.Properties\.ThingName\.Ref: refers to undeclared parameter 'Nope'",
        ),
        (
            lambda t: t["Parameters"]["ThingName"].update(Type="Integer"),
            r"Parameters\.ThingName\.Type: unknown value 'Integer'; allowed values: Number, String",
        ),
        (
            lambda t: t["Resources"]["thing"].update(OverrideSettings={"ThingTypeName": "KEEP"}),
            r"Resources\.thing\.OverrideSettings\.ThingTypeName: unknown value 'KEEP'; "
            r"allowed values: DO_NOTHING",
        ),
        (
            lambda t: t["Resources"].pop("thing"),
            r"Resources: exactly one AWS::IoT::Thing resource is required",
        ),
        (
            lambda t: t["CDF"].update(createDeviceCertificate="yes"),
            r"CDF\.createDeviceCertificate: expected true or false",
        ),
        (
            lambda t: t["CDF"].update(attachAdditionalPolicies=[{"nom": "x"}]),
            r"CDF\.attachAdditionalPolicies\[0\]\.nom: unknown field; allowed values: name",
        ),
        (
            lambda t: t.update(Outputs={}),
            r"^inline: Outputs: unknown field; allowed values: CDF, Description",
        ),
        (
            lambda t: t["Resources"]["thing"]["Properties"].update(ThingName={"Fn::Sub": "x"}),
            r"ThingName\.Fn::Sub: unknown function; allowed values: Fn::Join, Ref",
        ),
    ],
)
def test_template_errors(mutate, pattern: str) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(json.dumps(BUILTIN_TEMPLATES["greengrass2-core"]))
    mutate(body)
    with pytest.raises(InputError, match=pattern):
        ProvisioningTemplate.parse(body, "t", source="inline")


def test_invalid_json_file_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"Resources": {,}}')
    with pytest.raises(InputError, match=re.escape(f"{bad}: invalid JSON at line 1 column 16")):
        ProvisioningTemplate.load(bad)


def test_resolved_thing_name_is_validated() -> None:
    tmpl = ProvisioningTemplate.builtin("greengrass2-client-device")
    with pytest.raises(InputError, match=r"invalid thing name 'a/b'"):
        tmpl.resolve({"ThingName": "a/b"})
