"""Validation of core, device and deployment task requests (the seed-001 REST bodies) into task items.

Everything is checked before a task is stored: a bad field in item 7,312 of a 10,000-device request
fails the whole request at once, naming ``devices[7312].provisioningParameters.X``, instead of failing
half-way through provisioning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.cloud.ca import KEY_TYPES, CertInfo
from harness.cloud.registry import ConnectivityInfo, TaskKind
from harness.cloud.templates import DEFAULT_CORE_TEMPLATE, DEFAULT_DEVICE_TEMPLATE, ProvisioningTemplate
from harness.cloud.validation import (
    check_group_name,
    check_keys,
    check_thing_name,
    expect_bool,
    expect_choice,
    expect_int,
    expect_list,
    expect_object,
    expect_str,
    fail,
    join,
)
from harness.errors import InputError

TASK_TYPES = ("Create", "Delete")
CONFIG_GENERATORS = ("FLEET_PROVISIONING", "MANUAL_INSTALL")
DEFAULT_CORE_VERSION = "2.5.0"
CERT_INFO_FIELDS = {
    "commonName": "common_name",
    "country": "country",
    "organization": "organization",
    "organizationalUnit": "organizational_unit",
    "locality": "locality",
    "stateName": "state",
    "emailAddress": "email",
    "daysExpiry": "days",
}
CDF_PARAMETER_FIELDS = ("caId", "certInfo", "keyType")

TemplateLookup = Callable[[str, str | None, str], ProvisioningTemplate]  # (name, source, path) -> template


@dataclass(frozen=True)
class TaskRequest:
    """A validated request: the task-level fields and one (name, spec) per item."""

    kind: TaskKind
    type: str
    core_name: str | None
    request: dict[str, Any]
    items: list[tuple[str, dict[str, Any]]]


def parse_host_port(text: str, source: str | None = None, path: str = "connectivity") -> ConnectivityInfo:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as given on command lines."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        fail(source, path, f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        fail(source, path, f"write IPv6 addresses in brackets, e.g. [::1]:8883 (got {text!r})")
    return ConnectivityInfo(
        host=_check_host(host, source, path), port=expect_int(port, source, path, minimum=1, maximum=65535)
    )


def _check_host(host: str, source: str | None, path: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if (
        not host
        or len(host) > 253
        or not all(lbl and len(lbl) <= 63 and lbl.replace("-", "").isalnum() for lbl in labels)
    ):
        fail(source, path, f"invalid host {host!r}: expected an IP address or a DNS name")
    return host


def parse_connectivity(raw: object, source: str | None, path: str) -> list[ConnectivityInfo]:
    """A list of ``{"HostAddress", "PortNumber", "Id"?, "Metadata"?}`` objects or ``"HOST:PORT"`` strings."""
    out: list[ConnectivityInfo] = []
    for i, entry in enumerate(expect_list(raw, source, path)):
        epath = join(path, i)
        if isinstance(entry, str):
            out.append(parse_host_port(entry, source, epath))
            continue
        obj = expect_object(entry, source, epath)
        check_keys(
            obj,
            source,
            epath,
            allowed=["HostAddress", "Id", "Metadata", "PortNumber"],
            required=["HostAddress", "PortNumber"],
        )
        host = _check_host(
            expect_str(obj["HostAddress"], source, join(epath, "HostAddress")),
            source,
            join(epath, "HostAddress"),
        )
        port = expect_int(obj["PortNumber"], source, join(epath, "PortNumber"), minimum=1, maximum=65535)
        ident = expect_str(obj.get("Id", ""), source, join(epath, "Id"), non_empty=False)
        meta = expect_str(obj.get("Metadata", ""), source, join(epath, "Metadata"), non_empty=False)
        out.append(ConnectivityInfo(host=host, port=port, id=ident, metadata=meta))
    ids = [c.to_json()["Id"] for c in out]
    if len(set(ids)) != len(ids):
        fail(source, path, "connectivity Ids must be unique")
    return out


def cert_info_from_spec(spec: dict[str, Any], thing_name: str) -> CertInfo:
    """Build the certificate subject from a stored item's ``cdfProvisioningParameters.certInfo``."""
    raw = spec.get("cdfProvisioningParameters", {}).get("certInfo", {})
    kwargs: dict[str, Any] = {CERT_INFO_FIELDS[k]: v for k, v in raw.items()}
    kwargs.setdefault("common_name", thing_name)
    return CertInfo(**kwargs)


def _parse_cdf_parameters(raw: object, source: str | None, path: str, root_ca_id: str) -> dict[str, Any]:
    obj = expect_object(raw, source, path)
    check_keys(obj, source, path, allowed=CDF_PARAMETER_FIELDS)
    out: dict[str, Any] = {}
    if "caId" in obj:
        ca_id = expect_str(obj["caId"], source, join(path, "caId"))
        if ca_id not in (root_ca_id, "default"):
            fail(source, join(path, "caId"), f"unknown CA {ca_id!r}", ["default", root_ca_id])
        out["caId"] = ca_id
    if "keyType" in obj:
        out["keyType"] = expect_choice(obj["keyType"], source, join(path, "keyType"), KEY_TYPES)
    if "certInfo" in obj:
        ipath = join(path, "certInfo")
        info = expect_object(obj["certInfo"], source, ipath)
        check_keys(info, source, ipath, allowed=CERT_INFO_FIELDS)
        clean: dict[str, Any] = {}
        for key, value in info.items():
            if key == "daysExpiry":
                clean[key] = expect_int(value, source, join(ipath, key), minimum=1, maximum=36500)
            elif key == "country":
                text = expect_str(value, source, join(ipath, key))
                if len(text) != 2:
                    fail(source, join(ipath, key), f"expected a two-letter country code, got {text!r}")
                clean[key] = text
            else:
                clean[key] = expect_str(value, source, join(ipath, key))
        try:
            cert_info_from_spec({"cdfProvisioningParameters": {"certInfo": clean}}, "check").subject()
        except InputError as exc:
            fail(source, ipath, str(exc))
        out["certInfo"] = clean
    return out


def _parse_create_item(
    entry: object,
    source: str | None,
    path: str,
    default_template: str,
    templates: TemplateLookup,
    root_ca_id: str,
    *,
    core: bool,
) -> tuple[str, dict[str, Any]]:
    obj = expect_object(entry, source, path)
    allowed = ["cdfProvisioningParameters", "name", "provisioningParameters", "provisioningTemplate"]
    if core:
        allowed += ["configFileGenerator", "connectivity"]
    check_keys(obj, source, path, allowed=allowed, required=["name"])
    name = check_thing_name(obj["name"], source, join(path, "name"))
    template_name = expect_str(
        obj.get("provisioningTemplate", default_template), source, join(path, "provisioningTemplate")
    )
    template = templates(template_name, source, join(path, "provisioningTemplate"))
    params = dict(
        expect_object(obj.get("provisioningParameters", {}), source, join(path, "provisioningParameters"))
    )
    if "ThingName" in template.parameters:
        params.setdefault("ThingName", name)
    resolved = template.resolve(params, source=source, path=join(path, "provisioningParameters"))
    if resolved.thing_name != name:
        fail(
            source,
            join(path, "provisioningParameters.ThingName"),
            f"the template makes thing {resolved.thing_name!r} but the item is named {name!r}",
        )
    spec: dict[str, Any] = {
        "name": name,
        "provisioningTemplate": template_name,
        "provisioningParameters": params,
        "cdfProvisioningParameters": _parse_cdf_parameters(
            obj.get("cdfProvisioningParameters", {}),
            source,
            join(path, "cdfProvisioningParameters"),
            root_ca_id,
        ),
    }
    if core:
        spec["configFileGenerator"] = expect_choice(
            obj.get("configFileGenerator", "MANUAL_INSTALL"),
            source,
            join(path, "configFileGenerator"),
            CONFIG_GENERATORS,
        )
        spec["connectivity"] = [
            c.to_json()
            for c in parse_connectivity(obj.get("connectivity", []), source, join(path, "connectivity"))
        ]
    return name, spec


def _unique(items: Sequence[tuple[str, dict[str, Any]]], source: str | None, path: str) -> None:
    seen: dict[str, int] = {}
    for i, (name, _) in enumerate(items):
        if name in seen:
            fail(
                source, join(join(path, i), "name"), f"duplicate name {name!r} (also at {path}[{seen[name]}])"
            )
        seen[name] = i


def parse_core_task(
    body: object, templates: TemplateLookup, root_ca_id: str, source: str | None = None
) -> TaskRequest:
    """``POST /coreTasks``: create or delete cores."""
    obj = expect_object(body, source, "")
    check_keys(
        obj, source, "", allowed=["coreVersion", "cores", "options", "type"], required=["cores", "type"]
    )
    type_ = expect_choice(obj["type"], source, "type", TASK_TYPES)
    core_version = expect_str(obj.get("coreVersion", DEFAULT_CORE_VERSION), source, "coreVersion")
    entries = expect_list(obj["cores"], source, "cores", non_empty=True)
    request: dict[str, Any] = {"coreVersion": core_version}
    items: list[tuple[str, dict[str, Any]]] = []
    if type_ == "Create":
        if "options" in obj:
            fail(source, "options", "only Delete tasks take options")
        for i, entry in enumerate(entries):
            items.append(
                _parse_create_item(
                    entry, source, join("cores", i), DEFAULT_CORE_TEMPLATE, templates, root_ca_id, core=True
                )
            )
    else:
        options = expect_object(obj.get("options", {}), source, "options")
        check_keys(options, source, "options", allowed=["deprovisionClientDevices", "deprovisionCores"])
        request["options"] = {
            "deprovisionClientDevices": expect_bool(
                options.get("deprovisionClientDevices", False), source, "options.deprovisionClientDevices"
            ),
            "deprovisionCores": expect_bool(
                options.get("deprovisionCores", False), source, "options.deprovisionCores"
            ),
        }
        for i, entry in enumerate(entries):
            epath = join("cores", i)
            eobj = expect_object(entry, source, epath)
            check_keys(eobj, source, epath, allowed=["name", "provisioningTemplate"], required=["name"])
            items.append(
                (check_thing_name(eobj["name"], source, join(epath, "name")), {"name": eobj["name"]})
            )
    _unique(items, source, "cores")
    return TaskRequest(kind="core", type=type_, core_name=None, request=request, items=items)


def parse_device_task(
    core_name: str, body: object, templates: TemplateLookup, root_ca_id: str, source: str | None = None
) -> TaskRequest:
    """``POST /cores/<core>/deviceTasks``: create (and associate) or delete client devices.

    The seed's example spells the type field ``types``; both spellings are accepted.
    """
    obj = expect_object(body, source, "")
    if "types" in obj and "type" not in obj:
        obj = {("type" if k == "types" else k): v for k, v in obj.items()}
    check_keys(obj, source, "", allowed=["devices", "options", "type"], required=["devices", "type"])
    check_thing_name(core_name, source, "coreName")
    type_ = expect_choice(obj["type"], source, "type", TASK_TYPES)
    entries = expect_list(obj["devices"], source, "devices", non_empty=True)
    request: dict[str, Any] = {}
    items: list[tuple[str, dict[str, Any]]] = []
    if type_ == "Create":
        if "options" in obj:
            fail(source, "options", "only Delete tasks take options")
        for i, entry in enumerate(entries):
            items.append(
                _parse_create_item(
                    entry,
                    source,
                    join("devices", i),
                    DEFAULT_DEVICE_TEMPLATE,
                    templates,
                    root_ca_id,
                    core=False,
                )
            )
    else:
        options = expect_object(obj.get("options", {}), source, "options")
        check_keys(options, source, "options", allowed=["deprovision", "disassociateDeviceFromCore"])
        request["options"] = {
            "deprovision": expect_bool(options.get("deprovision", True), source, "options.deprovision"),
            "disassociateDeviceFromCore": expect_bool(
                options.get("disassociateDeviceFromCore", True), source, "options.disassociateDeviceFromCore"
            ),
        }
        for i, entry in enumerate(entries):
            epath = join("devices", i)
            eobj = expect_object(entry, source, epath)
            check_keys(eobj, source, epath, allowed=["name"], required=["name"])
            items.append(
                (check_thing_name(eobj["name"], source, join(epath, "name")), {"name": eobj["name"]})
            )
    _unique(items, source, "devices")
    return TaskRequest(kind="device", type=type_, core_name=core_name, request=request, items=items)


def parse_deployment_task(
    body: object,
    *,
    template_version: Callable[[str, int | None, str | None, str], int],
    resolve_targets: Callable[[list[str], list[str], str | None], list[str]],
    source: str | None = None,
) -> TaskRequest:
    """``POST /deploymentTasks``: apply a component-template version to cores named directly or by group."""
    obj = expect_object(body, source, "")
    check_keys(obj, source, "", allowed=["targets", "template"], required=["targets", "template"])
    tmpl = expect_object(obj["template"], source, "template")
    check_keys(tmpl, source, "template", allowed=["name", "version"], required=["name"])
    name = check_group_name(tmpl["name"], source, "template.name")
    version = (
        None
        if tmpl.get("version") in (None, "")
        else expect_int(tmpl["version"], source, "template.version", minimum=1)
    )
    resolved_version = template_version(name, version, source, "template")
    targets = expect_object(obj["targets"], source, "targets")
    check_keys(targets, source, "targets", allowed=["thingGroupNames", "thingNames"])
    thing_names = [
        check_thing_name(t, source, join("targets.thingNames", i))
        for i, t in enumerate(expect_list(targets.get("thingNames", []), source, "targets.thingNames"))
    ]
    groups = [
        expect_str(g, source, join("targets.thingGroupNames", i))
        for i, g in enumerate(
            expect_list(targets.get("thingGroupNames", []), source, "targets.thingGroupNames")
        )
    ]
    if not thing_names and not groups:
        fail(source, "targets", "name at least one core in thingNames or thingGroupNames")
    cores = resolve_targets(thing_names, groups, source)
    request = {
        "template": {"name": name, "version": resolved_version},
        "targets": {"thingNames": thing_names, **({"thingGroupNames": groups} if groups else {})},
    }
    return TaskRequest(
        kind="deployment",
        type="Deploy",
        core_name=None,
        request=request,
        items=[(core, {"coreName": core}) for core in cores],
    )
