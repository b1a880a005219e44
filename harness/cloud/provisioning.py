"""What core and device tasks do to each item: create or delete things, certificates, keys and associations.

Order matters for crash safety. On create, key and certificate files are written (atomically) before the
registry rows that point at them are committed, so a registry row never lacks its files; on delete, rows go
first and files after. A crash between the two leaves only unreferenced files, which the next run of the
item overwrites (create) or ``Cloud.check()`` reports and ``Cloud.repair()`` removes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.cloud.ca import CertificateAuthority, KeyType, cert_to_pem, certificate_id, iso, load_certificate
from harness.cloud.context import CloudContext
from harness.cloud.credentials import CredentialRequest, Credentials, PendingCredentials
from harness.cloud.files import PRIVATE_MODE, PUBLIC_MODE, remove_tree, write_atomic, write_bundle
from harness.cloud.registry import (
    ConnectivityInfo,
    ItemResult,
    NewCertificate,
    TaskItemRow,
    TaskRow,
    ThingKind,
)
from harness.cloud.task_requests import cert_info_from_spec
from harness.cloud.tasks import StopCheck
from harness.cloud.templates import ProvisioningTemplate, ResolvedResources
from harness.errors import InputError

log = logging.getLogger(__name__)

PIPELINE_DEPTH = 2  # batches whose keys are being generated while an earlier batch is written


@dataclass
class _Planned:
    item: TaskItemRow
    resolved: ResolvedResources
    key_type: KeyType


@dataclass
class _Batch:
    items: list[_Planned]
    failures: list[ItemResult]
    credentials: PendingCredentials
    core_cas: dict[str, CertificateAuthority] = field(default_factory=dict)


class Provisioner:
    """Task handlers for ('core'|'device', 'Create'|'Delete')."""

    def __init__(self, ctx: CloudContext) -> None:
        self.ctx = ctx

    # -- create -----------------------------------------------------------------------------------

    def create(self, task: TaskRow, batches: Iterator[list[TaskItemRow]], should_stop: StopCheck) -> None:
        """Create cores or client devices, generating keys for the next batches while writing this one."""
        inflight: deque[_Batch] = deque()
        templates: dict[str, ProvisioningTemplate] = {}
        for items in batches:
            inflight.append(self._plan(task, items, templates))
            while len(inflight) > PIPELINE_DEPTH:
                self._commit_create(task, inflight.popleft())
                if should_stop():
                    return  # keys generated for later batches are dropped; their items stay Waiting
            if should_stop():
                return
        while inflight and not should_stop():
            self._commit_create(task, inflight.popleft())

    def _plan(
        self, task: TaskRow, items: list[TaskItemRow], templates: dict[str, ProvisioningTemplate]
    ) -> _Batch:
        planned: list[_Planned] = []
        failures: list[ItemResult] = []
        requests: list[CredentialRequest] = []
        for item in items:
            spec = item.spec
            try:
                name = spec["provisioningTemplate"]
                template = templates.get(name)
                if template is None:
                    template = templates[name] = self.ctx.template(name)
                resolved = template.resolve(spec["provisioningParameters"])
                key_type: KeyType = spec["cdfProvisioningParameters"].get("keyType", "ec")
                if template.create_device_certificate:
                    requests.append(
                        CredentialRequest(
                            resolved.thing_name, key_type, cert_info_from_spec(spec, resolved.thing_name)
                        )
                    )
            except InputError as exc:  # e.g. the template was changed after the task was stored
                failures.append(ItemResult(item.position, "Failure", str(exc)))
                continue
            planned.append(_Planned(item, resolved, key_type))
        return _Batch(planned, failures, self.ctx.credentials.submit(self.ctx.root_ca, requests))

    def _commit_create(self, task: TaskRow, batch: _Batch) -> None:
        ctx = self.ctx
        creds = {c.name: c for c in batch.credentials.result()}
        results = list(batch.failures)
        existing = ctx.registry.existing_things([p.resolved.thing_name for p in batch.items])
        core_for_devices = task.core_name
        if (
            task.kind == "device"
            and core_for_devices is not None
            and ctx.registry.core(core_for_devices) is None
        ):
            for p in batch.items:
                results.append(ItemResult(p.item.position, "Failure", f"core {core_for_devices!r} not found"))
            ctx.registry.finish_items(task.id, results)
            return
        todo: list[_Planned] = []
        for p in batch.items:
            if p.resolved.thing_name in existing:
                results.append(
                    ItemResult(p.item.position, "Failure", f"thing {p.resolved.thing_name!r} already exists")
                )
            else:
                todo.append(p)
        # files first: every registry row committed below points at files that are already complete
        certs: dict[str, NewCertificate] = {}
        for p in todo:
            name = p.resolved.thing_name
            cred = creds.get(name)
            if cred is not None:
                certs[name] = self._write_credentials(name, cred)
            elif p.resolved.certificate_pem:
                try:
                    certs[name] = _external_certificate(
                        p.resolved.certificate_pem, p.resolved.certificate_status
                    )
                except InputError as exc:
                    results.append(ItemResult(p.item.position, "Failure", str(exc)))
                    continue
            if task.kind == "core":
                batch.core_cas[name] = self._write_core_files(name, task, p)
        todo = [p for p in todo if not any(r.position == p.item.position for r in results)]
        try:
            with ctx.registry.transaction():
                self._insert(task, todo, certs, batch.core_cas)
                results += [ItemResult(p.item.position, "Success") for p in todo]
                ctx.registry.finish_items(task.id, results)
        except sqlite3.IntegrityError:
            # another process created one of these names between the check and the commit: go one by one
            for p in todo:
                try:
                    with ctx.registry.transaction():
                        self._insert(task, [p], certs, batch.core_cas)
                        ctx.registry.finish_items(
                            task.id, [ItemResult(p.item.position, "Success")], batches_done=0
                        )
                except sqlite3.IntegrityError as exc:
                    ctx.registry.finish_items(
                        task.id, [ItemResult(p.item.position, "Failure", str(exc))], batches_done=0
                    )
            ctx.registry.finish_items(task.id, [r for r in results if r.status == "Failure"])

    def _write_credentials(self, name: str, cred: Credentials) -> NewCertificate:
        layout = self.ctx.layout
        key_path, cert_path = layout.thing_key(name), layout.thing_cert(name)
        write_bundle(
            layout.thing_dir(name),
            {key_path.name: (cred.key_pem, PRIVATE_MODE), cert_path.name: (cred.cert_pem, PUBLIC_MODE)},
            fsync=self.ctx.fsync,
        )
        return NewCertificate(
            id=cred.cert_id,
            pem=cred.cert_pem.decode(),
            serial=cred.serial,
            ca_id=self.ctx.root_ca.id,
            key_type=cred.key_type,
            cert_path=str(cert_path),
            key_path=str(key_path),
            not_after=cred.not_after,
        )

    def _write_core_files(self, name: str, task: TaskRow, planned: _Planned) -> CertificateAuthority:
        """The core's own CA (handed to client devices by discovery) and its installer configuration."""
        layout = self.ctx.layout
        ca = CertificateAuthority.create(f"{name} Greengrass Core CA", key_type="ec")
        ca.save(layout.core_ca_cert(name), layout.core_ca_key(name), fsync=self.ctx.fsync)
        config = installer_config(
            self.ctx,
            name,
            task.request.get("coreVersion", "2.5.0"),
            planned.item.spec.get("configFileGenerator", "MANUAL_INSTALL"),
        )
        write_atomic(layout.core_config(name), config.encode(), fsync=self.ctx.fsync)
        return ca

    def _insert(
        self,
        task: TaskRow,
        todo: list[_Planned],
        certs: dict[str, NewCertificate],
        core_cas: dict[str, CertificateAuthority],
    ) -> None:
        reg = self.ctx.registry
        kind: ThingKind = "core" if task.kind == "core" else "device"
        reg.add_things(
            (p.resolved.thing_name, kind, p.resolved.thing_type, p.resolved.attributes) for p in todo
        )
        names = [p.resolved.thing_name for p in todo]
        reg.add_certificates(certs[n] for n in names if n in certs)
        reg.attach_principals((n, certs[n].id) for n in names if n in certs)
        documents: dict[str, Any] = {}
        attach: list[tuple[str, str]] = []
        for p in todo:
            for pol in p.resolved.policies:
                if pol.document is not None:
                    documents[pol.name] = pol.document
                if p.resolved.thing_name in certs:
                    attach.append((pol.name, certs[p.resolved.thing_name].id))
        for pname, document in documents.items():
            reg.put_policy(pname, "deviceGroups" if "deviceGroups" in document else "iot", document)
        reg.ensure_policies(name for name, _ in attach)
        reg.attach_policies(attach)
        reg.add_group_members((g, p.resolved.thing_name) for p in todo for g in p.resolved.thing_groups)
        if task.kind == "device" and task.core_name is not None:
            reg.associate((task.core_name, n) for n in names)
        if task.kind == "core":
            layout = self.ctx.layout
            for p in todo:
                name = p.resolved.thing_name
                reg.add_core(
                    name,
                    core_version=str(task.request.get("coreVersion", "2.5.0")),
                    ca_pem=core_cas[name].pem.decode(),
                    ca_cert_path=str(layout.core_ca_cert(name)),
                    ca_key_path=str(layout.core_ca_key(name)),
                    config_path=str(layout.core_config(name)),
                )
                reg.set_connectivity(
                    name,
                    [
                        ConnectivityInfo(
                            host=c["HostAddress"], port=c["PortNumber"], id=c["Id"], metadata=c["Metadata"]
                        )
                        for c in p.item.spec.get("connectivity", [])
                    ],
                )

    # -- delete -----------------------------------------------------------------------------------

    def delete_devices(
        self, task: TaskRow, batches: Iterator[list[TaskItemRow]], should_stop: StopCheck
    ) -> None:
        options = task.request.get("options", {})
        deprovision = bool(options.get("deprovision", True))
        disassociate = bool(options.get("disassociateDeviceFromCore", True))
        reg = self.ctx.registry
        for items in batches:
            results: list[ItemResult] = []
            removed: list[str] = []
            with reg.transaction():
                for item in items:
                    thing = reg.thing(item.name)
                    if thing is None:
                        results.append(ItemResult(item.position, "Failure", f"thing {item.name!r} not found"))
                        continue
                    if thing.kind == "core":
                        results.append(
                            ItemResult(
                                item.position,
                                "Failure",
                                f"{item.name!r} is a core; delete it with a core task",
                            )
                        )
                        continue
                    if disassociate and task.core_name is not None:
                        reg.disassociate([(task.core_name, item.name)])
                    if deprovision:
                        self._deprovision(item.name)
                        removed.append(item.name)
                    results.append(ItemResult(item.position, "Success"))
                reg.finish_items(task.id, results)
            for name in removed:  # rows are gone; now the files
                remove_tree(self.ctx.layout.thing_dir(name))
            if should_stop():
                return

    def delete_cores(
        self, task: TaskRow, batches: Iterator[list[TaskItemRow]], should_stop: StopCheck
    ) -> None:
        options = task.request.get("options", {})
        deprovision_cores = bool(options.get("deprovisionCores", False))
        deprovision_devices = bool(options.get("deprovisionClientDevices", False))
        reg = self.ctx.registry
        for items in batches:
            results: list[ItemResult] = []
            removed_things: list[str] = []
            removed_cores: list[str] = []
            with reg.transaction():
                for item in items:
                    if reg.core(item.name) is None:
                        results.append(ItemResult(item.position, "Failure", f"core {item.name!r} not found"))
                        continue
                    devices = reg.devices_of_core(item.name)
                    reg.disassociate((item.name, d) for d in devices)
                    if deprovision_devices:
                        for device in devices:
                            if not reg.cores_of_device(device):
                                self._deprovision(device)
                                removed_things.append(device)
                    reg.delete_core(item.name)
                    removed_cores.append(item.name)
                    if deprovision_cores:
                        self._deprovision(item.name)
                        removed_things.append(item.name)
                    else:
                        reg.set_thing_kind(item.name, "thing")
                    results.append(ItemResult(item.position, "Success"))
                reg.finish_items(task.id, results)
            for name in removed_things:
                remove_tree(self.ctx.layout.thing_dir(name))
            for name in removed_cores:
                remove_tree(self.ctx.layout.core_dir(name))
            if should_stop():
                return

    def _deprovision(self, name: str) -> None:
        """Delete a thing and the certificates no other thing uses (inside the caller's transaction)."""
        reg = self.ctx.registry
        certs = [c for c in reg.principals_of(name) if reg.things_of_certificate(c) == [name]]
        reg.delete_things([name])
        reg.delete_certificates(certs)


def _external_certificate(pem: str, status: str) -> NewCertificate:
    """A certificate the device brought (no key file here): registered as given."""
    cert = load_certificate(pem, "CertificatePem")
    return NewCertificate(
        id=certificate_id(cert),
        pem=cert_to_pem(cert).decode(),
        serial=format(cert.serial_number, "x"),
        status="ACTIVE" if status == "ACTIVE" else "INACTIVE",
        not_after=iso(cert.not_valid_after_utc),
    )


def installer_config(ctx: CloudContext, core: str, core_version: str, generator: str) -> str:
    """Greengrass V2 installer configuration pointing at the offline cloud's files (JSON is valid YAML)."""
    layout = ctx.layout
    system = {
        "certificateFilePath": str(layout.thing_cert(core).resolve()),
        "privateKeyPath": str(layout.thing_key(core).resolve()),
        "rootCaPath": str(layout.root_ca_cert.resolve()),
        "rootpath": "/greengrass/v2",
        "thingName": core,
    }
    nucleus = {
        "componentType": "NUCLEUS",
        "version": core_version,
        "configuration": {
            "awsRegion": ctx.region,
            "iotDataEndpoint": "localhost",
            "iotCredEndpoint": "localhost",
            "greengrassDataPlanePort": 8443,
        },
    }
    config: dict[str, Any] = {"system": system, "services": {"aws.greengrass.Nucleus": nucleus}}
    if generator == "FLEET_PROVISIONING":
        config["services"]["aws.greengrass.FleetProvisioningByClaim"] = {
            "configuration": {
                "rootPath": "/greengrass/v2",
                "awsRegion": ctx.region,
                "iotDataEndpoint": "localhost",
                "iotCredentialEndpoint": "localhost",
                "templateParameters": {"ThingName": core},
            }
        }
    return (
        "# generated by gg-harness (offline cloud); JSON is valid YAML\n"
        + json.dumps(config, indent=2)
        + "\n"
    )
