"""Component templates, deployment tasks and the fleet summary (seed 001).

A component template is a named, versioned list of components; a deployment task sets a template version
as the desired state of each target core. Whether the core then applies it is reported back (by a
``Deployer`` hook or by ``report_deployment``), which is what the fleet summary counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from harness.cloud.context import CloudContext
from harness.cloud.registry import ItemResult, TaskItemRow, TaskRow
from harness.cloud.tasks import StopCheck
from harness.cloud.validation import (
    check_group_name,
    check_keys,
    expect_list,
    expect_object,
    expect_str,
    fail,
    join,
)

log = logging.getLogger(__name__)

DEPLOYMENT_STATUSES = ("FAILED", "IN_PROGRESS", "SUCCEEDED")
DEVICE_STATUSES = ("HEALTHY", "UNHEALTHY", "UNKNOWN")
_VERSION = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")


def parse_components(
    raw: object, source: str | None = None, path: str = "components"
) -> list[dict[str, Any]]:
    """``[{"key": "aws.greengrass.Cli", "version": "2.5.0"}, ...]``, maybe with ``configurationUpdate``."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(expect_list(raw, source, path, non_empty=True)):
        epath = join(path, i)
        obj = expect_object(entry, source, epath)
        check_keys(
            obj, source, epath, allowed=["configurationUpdate", "key", "version"], required=["key", "version"]
        )
        key = expect_str(obj["key"], source, join(epath, "key"))
        if key in seen:
            fail(source, join(epath, "key"), f"component {key!r} is listed twice")
        seen.add(key)
        version = expect_str(obj["version"], source, join(epath, "version"))
        if not _VERSION.match(version):
            fail(source, join(epath, "version"), f"expected a semantic version like 2.5.0, got {version!r}")
        component: dict[str, Any] = {"key": key, "version": version}
        if "configurationUpdate" in obj:
            cpath = join(epath, "configurationUpdate")
            update = expect_object(obj["configurationUpdate"], source, cpath)
            check_keys(update, source, cpath, allowed=["merge", "reset"])
            component["configurationUpdate"] = update
        out.append(component)
    return out


def parse_component_template(body: object, source: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """``POST /templates`` body: ``{"name": ..., "components": [...]}``."""
    obj = expect_object(body, source, "")
    check_keys(
        obj, source, "", allowed=["components", "description", "name"], required=["components", "name"]
    )
    # the name becomes part of a thing-group name: no colon, no international characters
    name = check_group_name(obj["name"], source, "name")
    return name, parse_components(obj["components"], source)


class Deployments:
    """Handler for deployment tasks plus the reporting side and the fleet summary."""

    def __init__(self, ctx: CloudContext) -> None:
        self.ctx = ctx

    def template_view(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        found = self.ctx.registry.component_template(name, version)
        if found is None:
            return None
        ver, components, created = found
        return {
            "name": name,
            "version": ver,
            "components": components,
            "createdAt": created,
            "updatedAt": None,
        }

    def template_version(self, name: str, version: int | None, source: str | None, path: str) -> int:
        """Resolve the version a deployment asks for (latest when omitted), naming what exists on error."""
        found = self.ctx.registry.component_template(name, version)
        if found is None:
            known = [f"{n}@{v}" for n, v in self.ctx.registry.component_template_versions()]
            fail(
                source,
                path,
                f"no component template {name!r}" + (f" version {version}" if version else ""),
                known,
            )
        return found[0]

    def resolve_targets(self, thing_names: list[str], groups: list[str], source: str | None) -> list[str]:
        reg = self.ctx.registry
        cores: list[str] = []
        for i, name in enumerate(thing_names):
            if reg.core(name) is None:
                fail(source, join("targets.thingNames", i), f"{name!r} is not a provisioned core")
            cores.append(name)
        for i, group in enumerate(groups):
            members = [m for m in reg.group_members(group) if reg.core(m) is not None]
            if not members:
                fail(source, join("targets.thingGroupNames", i), f"thing group {group!r} holds no cores")
            cores.extend(members)
        return list(dict.fromkeys(cores))

    def run(self, task: TaskRow, batches: Iterator[list[TaskItemRow]], should_stop: StopCheck) -> None:
        reg = self.ctx.registry
        name = str(task.request["template"]["name"])
        version = int(task.request["template"]["version"])
        found = reg.component_template(name, version)
        for items in batches:
            results: list[ItemResult] = []
            started: list[str] = []
            with reg.transaction():
                for item in items:
                    core = item.spec["coreName"]
                    if found is None:
                        results.append(
                            ItemResult(item.position, "Failure", f"template {name}@{version} is gone")
                        )
                    elif reg.core(core) is None:
                        results.append(ItemResult(item.position, "Failure", f"core {core!r} not found"))
                    else:
                        reg.update_core(
                            core,
                            desired_template=name,
                            desired_version=version,
                            deployment_status="IN_PROGRESS",
                        )
                        started.append(core)
                        results.append(ItemResult(item.position, "Success"))
                reg.finish_items(task.id, results)
            if self.ctx.deployer is not None and found is not None:
                for core in started:
                    try:
                        outcome = self.ctx.deployer(core, name, version, found[1])
                    except Exception as exc:  # a deployer failure is a failed deployment, not a crashed task
                        log.warning("deployment of %s@%s to %s failed: %s", name, version, core, exc)
                        outcome = "FAILED"
                    self.report_deployment(core, name, version, outcome)
            if should_stop():
                return

    def report_deployment(self, core: str, name: str, version: int, status: str) -> None:
        """What the core reports back: SUCCEEDED makes the version the reported one; FAILED keeps the old."""
        if status not in DEPLOYMENT_STATUSES:
            fail(None, "status", f"unknown value {status!r}", DEPLOYMENT_STATUSES)
        reg = self.ctx.registry
        with reg.transaction():
            row = reg.core(core)
            if row is None:
                fail(None, "core", f"core {core!r} not found")
            fields: dict[str, Any] = {"reported_deployment_status": status}
            if (row.desired_template, row.desired_version) == (name, version):
                fields["deployment_status"] = status
            if status == "SUCCEEDED":
                fields.update(reported_template=name, reported_version=version)
            reg.update_core(core, **fields)

    def report_core_status(
        self, core: str, status: str, installed_components: list[Any] | None = None
    ) -> None:
        if status not in DEVICE_STATUSES:
            fail(None, "status", f"unknown value {status!r}", DEVICE_STATUSES)
        if self.ctx.registry.core(core) is None:
            fail(None, "core", f"core {core!r} not found")
        fields: dict[str, Any] = {"device_status": status}
        if installed_components is not None:
            fields["installed_components"] = installed_components
        self.ctx.registry.update_core(core, **fields)

    def fleet_summary(self) -> dict[str, Any]:
        """``GET /fleet/summary``: per template version, desired/reported use and last deployment outcome."""
        reg = self.ctx.registry
        templates: dict[str, dict[str, Any]] = {}

        def entry(name: str, version: int) -> dict[str, int]:
            tmpl = templates.setdefault(name, {"latestVersion": 0, "versions": {}})
            tmpl["latestVersion"] = max(tmpl["latestVersion"], version)
            versions: dict[str, dict[str, int]] = tmpl["versions"]
            return versions.setdefault(
                str(version),
                {
                    "desiredInUse": 0,
                    "reportedInUse": 0,
                    "lastDeploymentSuccess": 0,
                    "lastDeploymentFailed": 0,
                    "lastDeploymentInProgress": 0,
                },
            )

        for name, version in reg.component_template_versions():
            entry(name, version)
        for name, version, in_use, succeeded, failed, in_progress in reg.desired_template_usage():
            e = entry(name, version)
            e.update(
                desiredInUse=in_use,
                lastDeploymentSuccess=succeeded,
                lastDeploymentFailed=failed,
                lastDeploymentInProgress=in_progress,
            )
        for name, version, in_use in reg.reported_template_usage():
            entry(name, version)["reportedInUse"] = in_use
        for name, tmpl in templates.items():
            latest = reg.component_template(name)
            tmpl["latestVersion"] = latest[0] if latest else tmpl["latestVersion"]
        return {"templates": templates}
