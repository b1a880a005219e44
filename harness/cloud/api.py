"""The offline cloud's Python API: one object per state directory.

>>> cloud = Cloud("/tmp/state")                                   # doctest: +SKIP
>>> cloud.provision_core("MyCore", ["127.0.0.1:8883"])            # doctest: +SKIP
>>> cloud.provision_devices("MyCore", count=100, prefix="dev-")   # doctest: +SKIP
>>> with cloud.discovery_server(port=0) as server: ...            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from harness.cloud.ca import CertificateAuthority, CertInfo, KeyType, cert_to_pem, check_key_type, key_to_pem
from harness.cloud.context import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, CloudContext, Deployer
from harness.cloud.credentials import CredentialFactory
from harness.cloud.deployments import Deployments, parse_component_template
from harness.cloud.discovery import DEFAULT_HOST, DiscoveryServer
from harness.cloud.files import make_private_dir, write_atomic, write_private
from harness.cloud.layout import StateLayout, default_state_dir
from harness.cloud.policy import DeviceGroupPolicy
from harness.cloud.provisioning import Provisioner
from harness.cloud.registry import CERT_STATUSES, CertStatus, ConnectivityInfo, CoreRow, Registry, TaskRow
from harness.cloud.task_requests import (
    TaskRequest,
    parse_connectivity,
    parse_core_task,
    parse_deployment_task,
    parse_device_task,
    parse_host_port,
)
from harness.cloud.tasks import DEFAULT_BATCH_SIZE, TaskRunner
from harness.cloud.templates import (
    BUILTIN_TEMPLATES,
    DEFAULT_CORE_TEMPLATE,
    DEFAULT_DEVICE_TEMPLATE,
    ProvisioningTemplate,
)
from harness.cloud.validation import check_thing_name, fail, load_json_file
from harness.errors import InfraError, InputError

DEFAULT_TASK_TIMEOUT = 3600.0
ROOT_CA_NAME = "gg-harness offline root CA"

Progress = Callable[[TaskRow, dict[str, int]], None]


@dataclass(frozen=True)
class DeviceFiles:
    """What a device (or core) needs to connect: its certificate, its key and the root CA."""

    cert_path: Path
    key_path: Path
    root_ca_path: Path


@dataclass(frozen=True)
class CoreCA:
    """The core's own CA: returned to devices by discovery, signs the core's broker certificate."""

    cert_path: Path
    key_path: Path
    pem: str


@dataclass
class ConsistencyReport:
    """Problems break an invariant; orphans are leftover files from an interrupted write (harmless)."""

    problems: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Cloud:
    """Certificates, registry, provisioning tasks, deployments and discovery for one state directory."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        region: str | None = None,
        account_id: str | None = None,
        workers: int | None = None,
        fsync: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        deployer: Deployer | None = None,
    ) -> None:
        self.layout = StateLayout(Path(state_dir) if state_dir is not None else default_state_dir())
        root = self.layout.root
        try:
            make_private_dir(root)
            make_private_dir(self.layout.ca_dir)
            with open(root / ".init.lock", "ab") as lock:  # two processes opening a new state dir at once
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                self.registry = Registry(self.layout.db, durable=fsync)
                root_ca = CertificateAuthority.load_or_create(
                    self.layout.root_ca_cert, self.layout.root_ca_key, ROOT_CA_NAME, fsync=fsync
                )
                region = self._setting("region", region, DEFAULT_REGION)
                account_id = self._setting("account_id", account_id, DEFAULT_ACCOUNT_ID)
                self.registry.set_setting("root_ca_id", root_ca.id)
        except OSError as exc:
            raise InfraError(f"cannot use state directory {root}: {exc}") from exc
        self.ctx = CloudContext(
            layout=self.layout,
            registry=self.registry,
            root_ca=root_ca,
            credentials=CredentialFactory(workers),
            region=region,
            account_id=account_id,
            fsync=fsync,
            deployer=deployer,
        )
        self.provisioner = Provisioner(self.ctx)
        self.deployments = Deployments(self.ctx)
        self.runner = TaskRunner(
            self.registry,
            self.layout.locks_dir,
            {
                ("core", "Create"): self.provisioner.create,
                ("core", "Delete"): self.provisioner.delete_cores,
                ("device", "Create"): self.provisioner.create,
                ("device", "Delete"): self.provisioner.delete_devices,
                ("deployment", "Deploy"): self.deployments.run,
            },
            default_batch_size=batch_size,
        )

    def _setting(self, key: str, given: str | None, default: str) -> str:
        stored = self.registry.setting(key)
        value = given or stored or default
        if value != stored:
            self.registry.set_setting(key, value)
        return value

    def close(self, timeout: float = 30.0) -> None:
        """Stop the task runner (unfinished tasks stay resumable) and release the registry."""
        try:
            self.runner.stop(timeout)
        finally:
            self.ctx.credentials.close()
            self.registry.close()

    def __enter__(self) -> Cloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- certificates -----------------------------------------------------------------------------

    @property
    def root_ca_path(self) -> Path:
        return self.layout.root_ca_cert

    @property
    def root_ca_pem(self) -> str:
        return self.ctx.root_ca.pem.decode()

    def core_ca(self, core_name: str) -> CoreCA:
        row = self._core_row(core_name)
        return CoreCA(cert_path=Path(row.ca_cert_path), key_path=Path(row.ca_key_path), pem=row.ca_pem)

    def broker_sans(self, core_name: str) -> list[str]:
        """The SANs a core's broker certificate carries: its connectivity hosts and localhost."""
        hosts = [c.host for c in self.registry.connectivity(core_name)]
        return list(dict.fromkeys([*hosts, "localhost"]))

    def issue_server_cert(
        self, core_name: str, sans: Sequence[str] | None = None, days: float = 7, *, key_type: KeyType = "ec"
    ) -> tuple[Path, Path]:
        """Issue (or rotate) the core's broker server certificate, signed by the core's CA.

        ``sans`` defaults to :meth:`broker_sans`. Returns (cert path, key path); the files are replaced
        atomically, so a broker reading them during a rotation sees the old pair or the new one.
        """
        if days <= 0:
            fail(None, "days", f"must be positive, got {days}")
        names = list(sans) if sans else self.broker_sans(core_name)
        ca = CertificateAuthority.load(*self._core_ca_paths(core_name))
        key, cert = ca.issue_key_and_cert(
            CertInfo(common_name=f"{core_name} broker").subject(),
            key_type=key_type,
            days=days,
            usage="server",
            sans=names,
        )
        directory = self.layout.core_server_dir(core_name)
        cert_path, key_path = directory / "server.pem", directory / "server.key"
        write_private(key_path, key_to_pem(key), fsync=self.ctx.fsync)
        write_atomic(cert_path, cert_to_pem(cert), fsync=self.ctx.fsync)
        return cert_path, key_path

    def _core_ca_paths(self, core_name: str) -> tuple[Path, Path]:
        ca = self.core_ca(core_name)
        return ca.cert_path, ca.key_path

    def certificate_ids(self, thing_name: str) -> list[str]:
        return self.registry.principals_of(thing_name)

    def set_certificate_status(self, thing_or_cert_id: str, status: CertStatus) -> list[str]:
        """Set the status of a certificate, or of every certificate of a thing; returns the ids changed."""
        if status not in CERT_STATUSES:
            fail(None, "status", f"unknown value {status!r}", CERT_STATUSES)
        ids = self.registry.principals_of(thing_or_cert_id) if self.registry.thing(thing_or_cert_id) else []
        if not ids:
            if self.registry.certificate(thing_or_cert_id) is None:
                fail(None, "certificate", f"no thing or certificate id {thing_or_cert_id!r}")
            ids = [thing_or_cert_id]
        with self.registry.transaction():
            for cert_id in ids:
                self.registry.set_certificate_status(cert_id, status)
        return ids

    def revoke(self, thing_or_cert_id: str) -> list[str]:
        """Revoke a certificate (or all of a thing's): discovery then closes its connections unanswered."""
        ids = self.set_certificate_status(thing_or_cert_id, "REVOKED")
        self.write_crl()
        return ids

    def write_crl(self) -> Path:
        """The root CA's CRL of revoked device certificates, for brokers that check revocation."""
        revoked = []
        for row in self.registry.certificates("REVOKED"):
            if row.ca_id == self.ctx.root_ca.id:
                when = dt.datetime.fromisoformat((row.revoked_at or row.updated_at).replace("Z", "+00:00"))
                revoked.append((int(row.serial, 16), when))
        crl = self.ctx.root_ca.crl(revoked)
        write_atomic(self.layout.crl, crl.public_bytes(Encoding.PEM))
        return self.layout.crl

    # -- registry views ---------------------------------------------------------------------------

    def thing_arn(self, name: str) -> str:
        return self.ctx.thing_arn(name)

    def _core_row(self, name: str) -> CoreRow:
        row = self.registry.core(name)
        if row is None:
            fail(None, "core", f"no core named {name!r}", [c.name for c in self.registry.cores()][:20])
        return row

    def core(self, name: str) -> dict[str, Any]:
        """``GET /cores/<name>`` in the seed's shape, with local paths instead of S3 artefacts."""
        row = self._core_row(name)
        cert_created = self.registry.thing(name)
        return {
            "name": name,
            "coreVersion": row.core_version,
            "artifacts": {
                "certs": {
                    "path": str(self.layout.thing_dir(name)),
                    "createdAt": cert_created.created_at if cert_created else row.created_at,
                },
                "config": {"path": row.config_path, "createdAt": row.created_at},
            },
            "device": {
                "installedComponents": row.installed_components,
                "effectiveDeployments": [],
                "status": row.device_status,
            },
            "template": {
                "desired": {"name": row.desired_template or "None", "version": row.desired_version or 0},
                "reported": {
                    "name": row.reported_template or "None",
                    "version": row.reported_version or 0,
                    "deploymentStatus": row.reported_deployment_status or "None",
                },
            },
            "connectivity": [c.to_json() for c in self.registry.connectivity(name)],
            "thingArn": self.thing_arn(name),
            "clientDevices": len(self.registry.devices_of_core(name)),
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
        }

    def cores(self) -> list[str]:
        return [c.name for c in self.registry.cores()]

    def devices(self, core_name: str | None = None) -> list[str]:
        if core_name is not None:
            return self.registry.devices_of_core(core_name)
        return [t.name for t in self.registry.things("device")]

    def device_files(self, name: str) -> DeviceFiles:
        """Paths of the certificate and key this harness generated for a thing (cores included)."""
        check_thing_name(name, None, "thing")
        for cert_id in self.registry.principals_of(name):
            row = self.registry.certificate(cert_id)
            if row is not None and row.key_path and row.cert_path:
                return DeviceFiles(Path(row.cert_path), Path(row.key_path), self.root_ca_path)
        fail(None, "thing", f"no thing {name!r} with a certificate and key generated here")

    def export_device(self, name: str, out_dir: Path | str) -> DeviceFiles:
        """Copy cert.pem, key.pem (0600) and root-ca.pem into ``out_dir`` for a real device or a tool."""
        files = self.device_files(name)
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            cert, key, root = out / "cert.pem", out / "key.pem", out / "root-ca.pem"
            write_private(key, files.key_path.read_bytes())
            write_atomic(cert, files.cert_path.read_bytes())
            shutil.copyfile(self.root_ca_path, root)
        except OSError as exc:
            raise InfraError(f"cannot export {name} to {out}: {exc}") from exc
        return DeviceFiles(cert, key, root)

    # -- connectivity, associations, client policies ----------------------------------------------

    def set_connectivity(
        self, core_name: str, entries: Sequence[ConnectivityInfo | str | Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Replace the core's connectivity list (what discovery returns, in order)."""
        self._core_row(core_name)
        parsed = _connectivity(entries)
        self.registry.set_connectivity(core_name, parsed)
        return [c.to_json() for c in parsed]

    def connectivity(self, core_name: str) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.registry.connectivity(core_name)]

    def associate(self, core_name: str, device_names: Sequence[str]) -> None:
        self._core_row(core_name)
        missing = [d for d in device_names if self.registry.thing(d) is None]
        if missing:
            fail(None, "devices", f"no such things: {', '.join(missing[:10])}")
        self.registry.associate((core_name, d) for d in device_names)

    def disassociate(self, core_name: str, device_names: Sequence[str]) -> None:
        self.registry.disassociate((core_name, d) for d in device_names)

    def set_client_policy(
        self, core_name: str, document: Any, *, name: str | None = None, source: str | None = None
    ) -> DeviceGroupPolicy:
        """Validate a ``deviceGroups`` policy and make it the core's client-device authorization config."""
        self._core_row(core_name)
        policy = DeviceGroupPolicy.parse(document, source)
        policy_name = name or f"{core_name}-deviceGroups"
        with self.registry.transaction():
            self.registry.put_policy(policy_name, "deviceGroups", policy.document)
            self.registry.update_core(core_name, client_policy=policy_name)
        return policy

    def client_policy(self, core_name: str) -> DeviceGroupPolicy | None:
        row = self._core_row(core_name)
        if row.client_policy is None:
            return None
        stored = self.registry.policy(row.client_policy)
        return None if stored is None else DeviceGroupPolicy.parse(stored.document, f"policy {stored.name}")

    def put_policy(self, name: str, document: Any, source: str | None = None) -> None:
        """Store a named policy; ``deviceGroups`` documents are validated, others kept as given."""
        if isinstance(document, dict) and ("deviceGroups" in document or "definitions" in document):
            self.registry.put_policy(name, "deviceGroups", DeviceGroupPolicy.parse(document, source).document)
        else:
            self.registry.put_policy(name, "iot", document)

    # -- provisioning templates -------------------------------------------------------------------

    def put_provisioning_template(
        self, template: ProvisioningTemplate | Path | str | Mapping[str, Any], *, name: str | None = None
    ) -> ProvisioningTemplate:
        """Validate and store a template (a parsed one, a JSON file path, or a JSON body with ``name``)."""
        if isinstance(template, ProvisioningTemplate):
            parsed = template
        elif isinstance(template, Path | str):
            parsed = ProvisioningTemplate.load(Path(template), name)
        else:
            if name is None:
                fail(None, "name", "a template given as a JSON body needs a name")
            parsed = ProvisioningTemplate.parse(dict(template), name)
        self.registry.put_provisioning_template(parsed.name, parsed.body, parsed.source)
        return parsed

    def provisioning_template(self, name: str) -> ProvisioningTemplate:
        return self.ctx.template(name, None, "provisioningTemplate")

    def provisioning_templates(self) -> list[str]:
        return sorted(set(self.registry.provisioning_template_names()) | set(BUILTIN_TEMPLATES))

    # -- tasks ------------------------------------------------------------------------------------

    def submit_core_task(self, body: Mapping[str, Any] | Path, *, batch_size: int | None = None) -> str:
        """``POST /coreTasks`` (a JSON body or a file holding one); returns the task id (x-taskid)."""
        data, source = _body(body)
        return self._submit(parse_core_task(data, self.ctx.template, self.ctx.root_ca.id, source), batch_size)

    def submit_device_task(
        self, core_name: str, body: Mapping[str, Any] | Path, *, batch_size: int | None = None
    ) -> str:
        """``POST /cores/<core>/deviceTasks``; returns the task id."""
        data, source = _body(body)
        self._core_row(core_name)
        return self._submit(
            parse_device_task(core_name, data, self.ctx.template, self.ctx.root_ca.id, source), batch_size
        )

    def submit_deployment_task(self, body: Mapping[str, Any] | Path, *, batch_size: int | None = None) -> str:
        """``POST /deploymentTasks``; returns the task id."""
        data, source = _body(body)
        return self._submit(
            parse_deployment_task(
                data,
                template_version=self.deployments.template_version,
                resolve_targets=self.deployments.resolve_targets,
                source=source,
            ),
            batch_size,
        )

    def _submit(self, request: TaskRequest, batch_size: int | None) -> str:
        if batch_size is not None and batch_size < 1:
            fail(None, "batchSize", f"must be at least 1, got {batch_size}")
        return self.runner.submit(request, batch_size=batch_size)

    def resume_tasks(self) -> list[str]:
        """Continue every stored task that did not finish (e.g. the process was killed)."""
        return self.runner.resume()

    def task(self, task_id: str, *, include_items: bool = True) -> dict[str, Any]:
        """``GET /coreTasks|deviceTasks|deploymentTasks/<id>`` in the seed's shape, plus ``summary``."""
        row = self.registry.task(task_id)
        if row is None:
            fail(None, "taskId", f"no task {task_id!r}")
        return self._task_view(row, include_items)

    def tasks(self) -> list[dict[str, Any]]:
        return [self._task_view(t, False) for t in self.registry.tasks()]

    def _task_view(self, row: TaskRow, include_items: bool) -> dict[str, Any]:
        counts = self.registry.task_item_counts(row.id)
        view: dict[str, Any] = {"id": row.id, "type": row.type, "taskStatus": row.status}
        if row.status_message:
            view["statusMessage"] = row.status_message
        if row.kind == "core":
            view["coreVersion"] = row.request.get("coreVersion")
            if "options" in row.request:
                view["options"] = row.request["options"]
        elif row.kind == "device":
            view["coreName"] = row.core_name
            if "options" in row.request:
                view["options"] = row.request["options"]
        else:
            view["template"] = row.request["template"]
            view["targets"] = row.request["targets"]
        if include_items:
            key, name_key = {
                "core": ("cores", "name"),
                "device": ("devices", "name"),
                "deployment": ("deployments", "coreName"),
            }[row.kind]
            items = []
            for item in self.registry.task_items(row.id):
                entry: dict[str, Any] = {
                    name_key: item.name,
                    "taskStatus": item.status,
                    "createdAt": item.created_at,
                    "updatedAt": item.updated_at,
                }
                if item.message:
                    entry["statusMessage"] = item.message
                items.append(entry)
            view[key] = items
        view.update(
            createdAt=row.created_at,
            updatedAt=row.updated_at,
            batchesTotal=row.batches_total,
            batchesComplete=row.batches_complete,
            summary={
                "total": sum(counts.values()),
                "success": counts["Success"],
                "failure": counts["Failure"],
                "waiting": counts["Waiting"],
                "inProgress": counts["InProgress"],
            },
        )
        return view

    def wait_task(
        self,
        task_id: str,
        timeout: float = DEFAULT_TASK_TIMEOUT,
        *,
        include_items: bool = True,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Block until the task finished (Success or Failure) and return its view; InfraError on timeout."""
        row = self.runner.wait(task_id, timeout, progress=progress)
        return self._task_view(row, include_items)

    # -- convenience: the common provisioning calls -----------------------------------------------

    def provision_core(
        self,
        name: str,
        connectivity: Sequence[ConnectivityInfo | str | Mapping[str, Any]] = (),
        *,
        key_type: KeyType = "ec",
        template: str = DEFAULT_CORE_TEMPLATE,
        core_version: str = "2.5.0",
        config_file_generator: str = "MANUAL_INSTALL",
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Create one core (thing, certificate, key, CA, connectivity) and wait; returns :meth:`core`."""
        key_type = check_key_type(key_type)
        body = {
            "coreVersion": core_version,
            "type": "Create",
            "cores": [
                {
                    "name": name,
                    "provisioningTemplate": template,
                    "provisioningParameters": {},
                    "cdfProvisioningParameters": {"keyType": key_type},
                    "configFileGenerator": config_file_generator,
                    "connectivity": [c.to_json() for c in _connectivity(connectivity)],
                }
            ],
        }
        task = self.wait_task(self.submit_core_task(body), timeout)
        if task["taskStatus"] != "Success":
            raise InputError(
                f"provisioning core {name!r} failed: {task['cores'][0].get('statusMessage', '')}"
            )
        return self.core(name)

    def provision_devices(
        self,
        core_name: str,
        count: int,
        prefix: str,
        *,
        key_type: KeyType = "ec",
        template: str = DEFAULT_DEVICE_TEMPLATE,
        start: int = 0,
        batch_size: int | None = None,
        wait: bool = True,
        timeout: float = DEFAULT_TASK_TIMEOUT,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Create ``count`` client devices named ``<prefix><number>`` associated with the core.

        Returns the task view without per-item entries (``summary`` has the counts); with ``wait=False``
        returns at once with the task id in ``id``.
        """
        key_type = check_key_type(key_type)
        if count < 1:
            fail(None, "count", f"must be at least 1, got {count}")
        width = max(4, len(str(start + count - 1)))
        body = {
            "type": "Create",
            "devices": [
                {
                    "name": f"{prefix}{n:0{width}d}",
                    "provisioningTemplate": template,
                    "cdfProvisioningParameters": {"keyType": key_type},
                }
                for n in range(start, start + count)
            ],
        }
        task_id = self.submit_device_task(core_name, body, batch_size=batch_size)
        if not wait:
            return self.task(task_id, include_items=False)
        return self.wait_task(task_id, timeout, include_items=False, progress=progress)

    def delete_devices(
        self,
        core_name: str,
        names: Sequence[str],
        *,
        deprovision: bool = True,
        timeout: float = DEFAULT_TASK_TIMEOUT,
    ) -> dict[str, Any]:
        body = {
            "type": "Delete",
            "devices": [{"name": n} for n in names],
            "options": {"deprovision": deprovision, "disassociateDeviceFromCore": True},
        }
        return self.wait_task(self.submit_device_task(core_name, body), timeout, include_items=False)

    def delete_core(
        self,
        name: str,
        *,
        deprovision_core: bool = True,
        deprovision_devices: bool = True,
        timeout: float = DEFAULT_TASK_TIMEOUT,
    ) -> dict[str, Any]:
        body = {
            "type": "Delete",
            "cores": [{"name": name}],
            "options": {
                "deprovisionCores": deprovision_core,
                "deprovisionClientDevices": deprovision_devices,
            },
        }
        return self.wait_task(self.submit_core_task(body), timeout)

    # -- component templates, deployments, fleet --------------------------------------------------

    def create_component_template(
        self,
        name_or_body: str | Mapping[str, Any] | Path,
        components: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``POST /templates``: a new template, or a new version of an existing one."""
        if isinstance(name_or_body, str) and components is not None:
            name, parsed = parse_component_template({"name": name_or_body, "components": list(components)})
        else:
            data, source = _body(name_or_body if not isinstance(name_or_body, str) else Path(name_or_body))
            name, parsed = parse_component_template(data, source)
        version, _ = self.registry.add_component_template_version(name, parsed)
        view = self.deployments.template_view(name, version)
        assert view is not None
        return view

    def component_template(self, name: str, version: int | None = None) -> dict[str, Any]:
        view = self.deployments.template_view(name, version)
        if view is None:
            fail(
                None,
                "template",
                f"no component template {name!r}" + (f" version {version}" if version else ""),
            )
        return view

    def deploy(
        self,
        template: str,
        version: int | None = None,
        *,
        cores: Sequence[str] = (),
        groups: Sequence[str] = (),
        timeout: float = DEFAULT_TASK_TIMEOUT,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "template": {"name": template, **({"version": version} if version else {})},
            "targets": {"thingNames": list(cores), "thingGroupNames": list(groups)},
        }
        return self.wait_task(self.submit_deployment_task(body), timeout)

    def report_deployment(self, core_name: str, template: str, version: int, status: str) -> None:
        self.deployments.report_deployment(core_name, template, version, status)

    def report_core_status(
        self, core_name: str, status: str, installed_components: list[Any] | None = None
    ) -> None:
        self.deployments.report_core_status(core_name, status, installed_components)

    def fleet_summary(self) -> dict[str, Any]:
        return self.deployments.fleet_summary()

    # -- discovery --------------------------------------------------------------------------------

    def discovery_server(self, host: str = DEFAULT_HOST, port: int = 0, **kwargs: Any) -> DiscoveryServer:
        """A discovery endpoint over this state (not started: use ``start()`` or ``with``)."""
        return DiscoveryServer(self.ctx, host, port, **kwargs)

    # -- consistency ------------------------------------------------------------------------------

    def check(self) -> ConsistencyReport:
        """Verify the invariants a crash must never break: no thing without a certificate, no registered
        certificate without its files (keys non-empty and 0600), every core with its CA."""
        report = ConsistencyReport()
        for name in self.registry.things_without_certificates():
            report.problems.append(f"thing {name} has no certificate")
        referenced: set[Path] = set()
        for cert_id, cert_path, key_path in self.registry.certificate_files():
            for label, path_text in (("certificate", cert_path), ("key", key_path)):
                if path_text is None:
                    continue
                path = Path(path_text)
                referenced.add(path.parent)
                try:
                    st = path.stat()
                except OSError:
                    report.problems.append(f"certificate {cert_id[:12]}: {label} file {path} is missing")
                    continue
                if st.st_size == 0:
                    report.problems.append(f"certificate {cert_id[:12]}: {label} file {path} is empty")
                if label == "key" and stat.S_IMODE(st.st_mode) != 0o600:
                    report.problems.append(f"key {path} has mode {stat.S_IMODE(st.st_mode):o}, not 600")
        cores = {c.name for c in self.registry.cores()}
        for core in self.registry.cores():
            for path_text in (core.ca_cert_path, core.ca_key_path):
                if not Path(path_text).is_file():
                    report.problems.append(f"core {core.name}: CA file {path_text} is missing")
        for directory, known in ((self.layout.things_dir, referenced), (self.layout.cores_dir, None)):
            if not directory.is_dir():
                continue
            for entry in directory.iterdir():
                if (known is not None and entry not in known) or (known is None and entry.name not in cores):
                    report.orphans.append(entry)
        for parent in (self.layout.things_dir, self.layout.cores_dir, self.layout.ca_dir):
            if parent.is_dir():
                report.orphans.extend(p for p in parent.rglob(".*.tmp"))
        report.orphans = list(dict.fromkeys(report.orphans))
        return report

    def repair(self) -> ConsistencyReport:
        """Remove orphaned files left by an interrupted run (never touches anything the registry uses)."""
        report = self.check()
        for path in report.orphans:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return report


def _connectivity(entries: Sequence[ConnectivityInfo | str | Mapping[str, Any]]) -> list[ConnectivityInfo]:
    out: list[ConnectivityInfo] = []
    raw: list[Any] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, ConnectivityInfo):
            out.append(entry)
        elif isinstance(entry, str):
            out.append(parse_host_port(entry, None, f"connectivity[{i}]"))
        else:
            raw.append(dict(entry))
    if raw:
        out.extend(parse_connectivity(raw, None, "connectivity"))
    return out


def _body(body: Mapping[str, Any] | Path) -> tuple[Any, str | None]:
    if isinstance(body, Path):
        return load_json_file(body), str(body)
    return dict(body), None
