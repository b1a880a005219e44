"""How to drive a nucleus with ``greengrass-cli``: command lines per core, and the CLI's output parsed.

Why a separate layer: the driver must not care whether it talks to the harness's reference nucleus or to a
real Greengrass V2 core over SSH; only the command prefix, how the core is started/stopped and how its
logs are read differ, and those are configuration (``CoreCli`` subclasses). The parsers accept the real
CLI's output in both the old (``<id>: <STATUS>`` only, unindented component blocks) and the current
(``Created on``/``Detailed Status``/..., indented ``Version:`` lines) forms; the reference CLI prints the
current form.
"""

from __future__ import annotations

import abc
import json
import re
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.nucleus.device.settings import AgentSettings
from harness.errors import TargetError
from harness.targets.base import Target

#: Local deployment states of the nucleus (``DeploymentStatus`` of the IPC model); the last three are final.
DEPLOYMENT_STATES = ("QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "CANCELED")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED")
COMPONENT_STATES = ("NEW", "INSTALLED", "STARTING", "RUNNING", "STOPPING", "FINISHED", "ERRORED", "BROKEN")
DEVICE_PACKAGE = Path(__file__).with_name("device")


class CliOutputError(TargetError):
    """``greengrass-cli`` printed something the parser does not understand (the output is in the message)."""


@dataclass(frozen=True)
class ComponentInfo:
    name: str
    version: str
    state: str
    configuration: Any = None


@dataclass(frozen=True)
class DeploymentInfo:
    id: str
    status: str
    created: str = ""
    detailed_status: str = ""
    error_stack: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    failure_cause: str = ""
    raw: str = ""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def summary(self) -> str:
        parts = [f"{self.id}: {self.status}"]
        if self.detailed_status:
            parts.append(self.detailed_status)
        if self.failure_cause:
            parts.append(f"cause: {self.failure_cause}")
        return ", ".join(parts)


# -- parsing ----------------------------------------------------------------------------------------
_CREATED = re.compile(r"Deployment Id:\s*([0-9A-Za-z-]+)")
_HEADER = re.compile(r"^([0-9A-Za-z][0-9A-Za-z-]{7,}):\s*([A-Z_]+)\s*$")
_KEYS = {
    "created on": "created",
    "detailed status": "detailed_status",
    "deployment error stack": "error_stack",
    "deployment error types": "error_types",
    "failure cause": "failure_cause",
    "deployment failure cause": "failure_cause",
}


def parse_create(stdout: str) -> str:
    """The deployment id from ``Local deployment submitted! Deployment Id: <id>``."""
    m = _CREATED.search(stdout)
    if not m:
        raise CliOutputError(f"deployment create printed no deployment id:\n{stdout.strip()}")
    return m.group(1)


def _list_field(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.strip().strip("[]").split(",") if v.strip())


def parse_deployments(stdout: str) -> list[DeploymentInfo]:
    """Every ``<id>: <STATUS>`` block of ``deployment status`` / ``deployment list`` output."""
    blocks: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        m = _HEADER.match(line.strip())
        if m and m.group(2) in DEPLOYMENT_STATES:
            blocks.append({"id": m.group(1), "status": m.group(2), "raw": [line]})
            continue
        if not blocks:
            continue
        blocks[-1]["raw"].append(line)
        key, sep, value = line.partition(":")
        name = _KEYS.get(key.strip().lower())
        if sep and name:
            blocks[-1][name] = _list_field(value) if name in ("error_stack", "error_types") else value.strip()
    return [
        DeploymentInfo(
            id=b["id"],
            status=b["status"],
            created=b.get("created", ""),
            detailed_status=b.get("detailed_status", ""),
            error_stack=b.get("error_stack", ()),
            error_types=b.get("error_types", ()),
            failure_cause=b.get("failure_cause", ""),
            raw="\n".join(b["raw"]),
        )
        for b in blocks
    ]


def parse_status(stdout: str, deployment_id: str | None = None) -> DeploymentInfo:
    found = parse_deployments(stdout)
    for d in found:
        if deployment_id is None or d.id == deployment_id:
            return d
    raise CliOutputError(
        f"deployment status printed no status for {deployment_id or 'the deployment'}:\n{stdout.strip()}"
    )


def parse_components(stdout: str) -> dict[str, ComponentInfo]:
    """``component list`` / ``component details`` output, by component name."""
    rows: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "component name":
            rows.append({"name": value})
        elif rows and key == "version":
            rows[-1]["version"] = value
        elif rows and key == "state":
            rows[-1]["state"] = value
        elif rows and key == "configuration":
            try:
                rows[-1]["configuration"] = json.loads(value)
            except ValueError:
                rows[-1]["configuration"] = value
    out = {}
    for r in rows:
        if "version" not in r or "state" not in r:
            raise CliOutputError(f"component {r['name']}: no Version or State in:\n{stdout.strip()}")
        out[r["name"]] = ComponentInfo(r["name"], r["version"], r["state"], r.get("configuration"))
    return out


# -- command lines ----------------------------------------------------------------------------------
class CoreCli(abc.ABC):
    """The command lines of one kind of core; the driver runs them on the target."""

    root: str
    #: Where uploaded recipes and artifacts are staged on the target for ``--recipeDir``/``--artifactDir``.
    stage_dir: str = "/tmp/gg-harness-deploy"

    @abc.abstractmethod
    def cli(self) -> list[str]:
        """The argv prefix that runs ``greengrass-cli``."""

    @abc.abstractmethod
    def start_argv(self, env: Mapping[str, str] | None = None) -> list[str]:
        """Start the core (returns once it serves the CLI, or fails), with extra environment ``env``."""

    @abc.abstractmethod
    def stop_argv(self, timeout: float) -> list[str]:
        """Stop the core cleanly."""

    @abc.abstractmethod
    def running_argv(self) -> list[str]:
        """Exits 0 when the core runs."""

    def install(self, target: Target) -> None:  # noqa: B027 - a real core is installed by its owner
        """Put what the core needs on the target (nothing for a real core: it is installed already)."""

    def read_argv(self, path: str) -> list[str] | None:
        """argv that prints a file of the core, or None to read it with ``target.read_text``."""
        return None

    def log_path(self, component: str | None = None) -> str:
        return f"{self.root}/logs/{component or 'greengrass'}.log"

    def deployment_create(
        self,
        recipe_dir: str | None,
        artifact_dir: str | None,
        merge: Mapping[str, str],
        remove: Sequence[str] = (),
        update_config: Mapping[str, Any] | None = None,
    ) -> list[str]:
        argv = [*self.cli(), "deployment", "create"]
        if recipe_dir:
            argv += ["--recipeDir", recipe_dir]
        if artifact_dir:
            argv += ["--artifactDir", artifact_dir]
        for name, version in merge.items():
            argv += ["--merge", f"{name}={version}"]
        for name in remove:
            argv += ["--remove", name]
        if update_config:
            argv += ["--update-config", json.dumps(update_config, separators=(",", ":"))]
        return argv

    def deployment_status(self, deployment_id: str) -> list[str]:
        return [*self.cli(), "deployment", "status", "--deploymentId", deployment_id]

    def deployment_cancel(self, deployment_id: str) -> list[str]:
        return [*self.cli(), "deployment", "cancel", "--deploymentId", deployment_id]

    def deployment_list(self) -> list[str]:
        return [*self.cli(), "deployment", "list"]

    def component_list(self) -> list[str]:
        return [*self.cli(), "component", "list"]

    def component_details(self, name: str) -> list[str]:
        return [*self.cli(), "component", "details", "--name", name]


@dataclass
class GreengrassV2Adapter(CoreCli):
    """A real Greengrass V2 core (Java nucleus, systemd service) reached through any target, e.g. SSH."""

    root: str = "/greengrass/v2"
    sudo: bool = True
    service: str = "greengrass.service"

    def _sudo(self) -> list[str]:
        return ["sudo", "-n"] if self.sudo else []

    def cli(self) -> list[str]:
        return [*self._sudo(), f"{self.root}/bin/greengrass-cli"]

    def start_argv(self, env: Mapping[str, str] | None = None) -> list[str]:
        if env:  # a systemd service does not take the caller's environment
            raise TargetError(f"{self.service}: extra environment {sorted(env)} cannot reach a systemd unit")
        return [*self._sudo(), "systemctl", "start", self.service]

    def stop_argv(self, timeout: float) -> list[str]:
        return [*self._sudo(), "systemctl", "stop", self.service]

    def running_argv(self) -> list[str]:
        return [*self._sudo(), "systemctl", "is-active", "--quiet", self.service]

    def read_argv(self, path: str) -> list[str] | None:
        return [*self._sudo(), "cat", path]  # the logs of a real core are readable by root only


@dataclass
class ReferenceNucleusAdapter(CoreCli):
    """The harness's own nucleus agent (``device/``), run by the target's python3 under ``root``."""

    root: str = "/greengrass"
    python: str = ""  # found on the target at install when empty
    faults: tuple[str, ...] = ()
    settings: AgentSettings = field(default_factory=AgentSettings)

    def cli(self) -> list[str]:
        return [f"{self.root}/bin/greengrass-cli"]

    def _nucleus(self) -> list[str]:
        return [f"{self.root}/bin/nucleus", "--root", self.root]

    def start_argv(self, env: Mapping[str, str] | None = None) -> list[str]:
        """``nucleus --daemon``; ``env`` (e.g. ``GG_CUTPOINT``) goes in front with ``env K=V``, so it reaches
        the loader and every nucleus it launches on any target."""
        argv = [*self._nucleus(), "--daemon", "--timeout", "60"]
        for f in self.faults:
            argv += ["--fault", f]
        if env:
            argv = ["env", *(f"{k}={v}" for k, v in sorted(env.items())), *argv]
        return argv

    def stop_argv(self, timeout: float) -> list[str]:
        return [*self._nucleus(), "--stop", "--timeout", f"{timeout:g}"]

    def running_argv(self) -> list[str]:
        return [*self._nucleus(), "--status"]

    def install(self, target: Target) -> None:
        """Copy the agent to ``<root>/lib/ggnucleus`` (the service's start/stop and the CLI) and, as the
        first launch directory ``alts/init`` (what Greengrass's first install sets up), the nucleus at its
        base version with its loader (``alts/init/distro/bin/loader``, which the service starts through
        ``alts/current``); settings; launchers in ``<root>/bin``.

        Every install starts from the base version: ``alts`` is reset to ``current -> init`` and a
        ``restart_panic`` marker or an unfinished nucleus update of an earlier session is removed.
        """
        from harness.core.nucleus.core_versions import BASE_VERSION, distro_files, file_mode

        python = self.python or _find_python(target)
        for src in sorted(DEVICE_PACKAGE.glob("*.py")):
            target.put(src, f"{self.root}/lib/ggnucleus/{src.name}", mode=0o644)
        reset = (
            'rm -rf "$1/alts" "$1/deployments/ongoing" "$1/work/aws.greengrass.Nucleus/restart_panic"'
        )
        res = target.run(["sh", "-c", reset, "sh", self.root], timeout=60)
        if not res.ok:
            raise TargetError(f"{target.name}: resetting {self.root}/alts failed:\n{res.evidence()}")
        with tempfile.TemporaryDirectory() as tmp:
            for rel, data in distro_files(BASE_VERSION).items():
                local = Path(tmp) / "f"
                local.write_bytes(data)
                target.put(local, f"{self.root}/alts/init/distro/{rel}", mode=file_mode(rel))
        res = target.run(["ln", "-s", "init", f"{self.root}/alts/current"], timeout=60)
        if not res.ok:
            raise TargetError(f"{target.name}: linking {self.root}/alts/current failed:\n{res.evidence()}")
        # the faults go into agent.json too: every process of the core (the loader, each nucleus it
        # launches, the OTA agent, a restart by a managedRespawn script) must carry the same defects
        faults = sorted(set(self.settings.faults) | set(self.faults))
        settings = AgentSettings.from_mapping({**json.loads(self.settings.to_json()), "faults": faults})
        _put_text(target, f"{self.root}/config/agent.json", settings.to_json() + "\n", 0o644)
        for name, module, call in (
            ("nucleus", "control", "main()"),
            ("greengrass-cli", "cli", f"main(default_root={self.root!r})"),
            ("ota-agent", "ota_agent", "main()"),
        ):
            launcher = (
                f"#!{python} -S\n"
                f'"""{name} of the harness reference nucleus (generated by the harness at install)."""\n'
                "import sys\n"
                f"sys.path.insert(0, {self.root + '/lib'!r})\n"
                f"from ggnucleus.{module} import main\n"
                f"sys.exit({call})\n"
            )
            _put_text(target, f"{self.root}/bin/{name}", launcher, 0o755)


def _find_python(target: Target) -> str:
    res = target.run(["sh", "-c", "command -v python3"], timeout=60)
    path = res.stdout.strip()
    if not res.ok or not path.startswith("/"):
        raise TargetError(
            f"{target.name}: the reference nucleus needs python3 on the target (command -v python3 "
            f"found nothing):\n{res.evidence()}"
        )
    return path


def _put_text(target: Target, remote: str, text: str, mode: int) -> None:
    with tempfile.NamedTemporaryFile("w", delete=False, encoding="utf-8") as fh:
        fh.write(text)
    try:
        target.put(Path(fh.name), remote, mode=mode)
    finally:
        Path(fh.name).unlink()


def shell_line(argv: Sequence[str]) -> str:
    """An argv as one would type it (for evidence in reports)."""
    return " ".join(shlex.quote(a) for a in argv)
