"""``NucleusDriver``: install, start and stop a nucleus, deploy components and watch them, via greengrass-cli.

Everything goes through the CLI commands a person would type on the device (``CoreCli`` builds them), so
pointing the driver at a real Greengrass V2 core is a matter of configuration::

    NucleusDriver(ssh_target, GreengrassV2Adapter(root="/greengrass/v2"))       # a real core over SSH
    NucleusDriver.reference(qemu_target, "/greengrass", faults=["broken_rule_off"])  # the harness's agent

Recipes and artifacts are host directories: the driver copies them to a staging directory on the target
(YAML recipes converted to JSON with PyYAML on the way) and passes that to ``--recipeDir``/``--artifactDir``.
Every wait has a timeout; a timeout raises ``NucleusTimeout`` with what was last seen.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from harness.core.nucleus import logparse
from harness.core.nucleus.cli_adapter import (
    ComponentInfo,
    CoreCli,
    DeploymentInfo,
    ReferenceNucleusAdapter,
    parse_components,
    parse_create,
    parse_status,
    shell_line,
)
from harness.core.nucleus.device.settings import AgentSettings
from harness.errors import InputError, TargetError
from harness.targets.base import RunResult, Target

T = TypeVar("T")
RECIPE_SUFFIXES = (".json", ".yaml", ".yml")
POLL_S = 0.25


class NucleusCommandError(TargetError):
    """A greengrass-cli (or start/stop) command failed; the message carries the command and its output."""


class NucleusTimeout(TargetError):
    """A wait ran out; the message says what was awaited and what was seen last."""


def load_recipe_file(path: Path) -> dict[str, Any]:
    """A recipe as JSON data; YAML is read with PyYAML (dates such as 2020-01-25 stay strings)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the recipe: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe must be a mapping")
    return dict(json.loads(json.dumps(data, default=str)))


class NucleusDriver:
    """Drives one nucleus on one target."""

    def __init__(self, target: Target, cli: CoreCli, *, command_timeout: float = 120.0) -> None:
        self.target = target
        self.cli = cli
        self.command_timeout = command_timeout
        self._stages: dict[str, str] = {}
        #: Every component this driver merged and every deployment it created, so a test can clean up
        #: what it did (and only that).
        self.deployed: set[str] = set()
        self.deployment_ids: list[str] = []
        self._finished: set[str] = set()

    @classmethod
    def reference(
        cls,
        target: Target,
        root: str,
        *,
        faults: Iterable[str] = (),
        settings: AgentSettings | None = None,
        python: str = "",
    ) -> NucleusDriver:
        adapter = ReferenceNucleusAdapter(
            root=root.rstrip("/") or "/",
            python=python,
            faults=tuple(faults),
            settings=settings or AgentSettings(),
        )
        return cls(target, adapter)

    # -- commands ---------------------------------------------------------------------------------
    def _run(self, argv: list[str], what: str, timeout: float | None = None) -> RunResult:
        res = self.target.run(argv, timeout=timeout or self.command_timeout)
        if not res.ok:
            raise NucleusCommandError(f"{self.target.name}: {what} failed:\n{res.evidence()}")
        return res

    # -- lifecycle of the core --------------------------------------------------------------------
    def install(self) -> None:
        self.cli.install(self.target)

    def is_running(self) -> bool:
        return self.target.run(self.cli.running_argv(), timeout=60).ok

    def start(self, timeout: float = 90.0, env: Mapping[str, str] | None = None) -> None:
        """Start the core and return once its CLI answers.

        ``env`` is extra environment for the core, e.g. ``{"GG_CUTPOINT": "launch.new_linked",
        "GG_CUTPOINT_MARKER": "/tmp/cut"}`` for a power-loss test (see ``device/cutpoints.py``).
        """
        if not self.is_running():
            self._run(self.cli.start_argv(env), "starting the nucleus", timeout)
        self._wait(lambda: self._try_components(), timeout, "the nucleus to answer `component list`")

    def stop(self, timeout: float = 60.0) -> None:
        self._run(self.cli.stop_argv(timeout), "stopping the nucleus", timeout + 30)

    # -- deployments ------------------------------------------------------------------------------
    def deploy(
        self,
        recipe_dir: Path | None = None,
        artifact_dir: Path | None = None,
        merge: Mapping[str, str] | None = None,
        remove: Sequence[str] = (),
        update_config: Mapping[str, Any] | None = None,
    ) -> str:
        """``deployment create`` with host directories uploaded first; returns the deployment id."""
        stage = f"{self.cli.stage_dir}/{uuid.uuid4().hex[:12]}"
        remote_recipes = self._upload_recipes(recipe_dir, f"{stage}/recipes") if recipe_dir else None
        remote_artifacts = self._upload_tree(artifact_dir, f"{stage}/artifacts") if artifact_dir else None
        argv = self.cli.deployment_create(
            remote_recipes, remote_artifacts, merge or {}, remove, update_config
        )
        try:
            res = self._run(argv, "deployment create")
            deployment_id = parse_create(res.stdout)
        except TargetError:
            self._cleanup(stage)
            raise
        self.deployed.update((merge or {}).keys())
        self.deployment_ids.append(deployment_id)
        self._stages[deployment_id] = stage
        return deployment_id

    def _upload_recipes(self, directory: Path, remote: str) -> str:
        files = sorted(p for p in directory.iterdir() if p.suffix in RECIPE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"{directory}: no recipe files (*.json, *.yaml)")
        with tempfile.TemporaryDirectory() as tmp:
            for path in files:
                data = load_recipe_file(path)
                local = Path(tmp) / f"{path.stem}.json"
                local.write_text(json.dumps(data, indent=1))
                self.target.put(local, f"{remote}/{path.stem}.json", mode=0o644)
        return remote

    def _upload_tree(self, directory: Path, remote: str) -> str:
        if not directory.is_dir():
            raise InputError(f"{directory}: not a directory of artifacts")
        files = [p for p in sorted(directory.rglob("*")) if p.is_file()]
        for path in files:
            rel = path.relative_to(directory).as_posix()
            self.target.put(path, f"{remote}/{rel}", mode=path.stat().st_mode & 0o777)
        if not files:  # an empty --artifactDir must still exist on the target
            self._run(["mkdir", "-p", "--", remote], "creating the artifact directory")
        return remote

    def _cleanup(self, stage: str) -> None:
        try:
            self.target.run(["rm", "-rf", "--", stage], timeout=60)
        except TargetError:
            pass

    def deployment(self, deployment_id: str) -> DeploymentInfo:
        res = self._run(self.cli.deployment_status(deployment_id), "deployment status")
        return parse_status(res.stdout, deployment_id)

    def wait_deployment(
        self, deployment_id: str, timeout: float, *, through_restart: bool = False
    ) -> DeploymentInfo:
        """Poll ``deployment status`` until it is SUCCEEDED, FAILED or CANCELED.

        ``through_restart``: the deployment restarts the core (a nucleus update), so a CLI that does not
        answer for a while is expected, not an error.
        """
        last: list[DeploymentInfo] = []

        def done() -> DeploymentInfo | None:
            try:
                info = self.deployment(deployment_id)
            except NucleusCommandError:
                if not through_restart:
                    raise
                return None
            last[:] = [info]
            if info.terminal:
                self._finished.add(deployment_id)
                return info
            return None

        try:
            info = self._wait(
                done,
                timeout,
                f"deployment {deployment_id} to finish",
                lambda: last[0].summary() if last else "",
            )
        finally:
            if not last or last[0].terminal:
                stage = self._stages.pop(deployment_id, None)
                if stage:
                    self._cleanup(stage)
        return info

    def cancel(self, deployment_id: str) -> None:
        """``deployment cancel``: stop waiting for (or drop) a deployment; components keep their state."""
        try:
            self._run(self.cli.deployment_cancel(deployment_id), "deployment cancel")
        except NucleusCommandError:
            if not self.deployment(deployment_id).terminal:
                raise  # a deployment that finished meanwhile needs no cancel
        stage = self._stages.pop(deployment_id, None)
        if stage:
            self._cleanup(stage)

    def clean_up(self, timeout: float) -> DeploymentInfo | None:
        """Cancel this driver's unfinished deployments and remove the components it merged."""
        for dep in self.deployment_ids:
            if dep not in self._finished and not self.deployment(dep).terminal:
                self.cancel(dep)
        self.deployment_ids.clear()
        self._finished.clear()
        merged = sorted(self.deployed)  # removing a component that is not there is a no-op
        self.deployed.clear()
        if not merged:
            return None
        info = self.deploy_and_wait(timeout, remove=merged)
        self.deployment_ids.clear()
        self._finished.clear()
        return info

    def deploy_and_wait(self, timeout: float, **kwargs: Any) -> DeploymentInfo:
        return self.wait_deployment(self.deploy(**kwargs), timeout)

    # -- components -------------------------------------------------------------------------------
    def _try_components(self) -> dict[str, ComponentInfo] | None:
        res = self.target.run(self.cli.component_list(), timeout=self.command_timeout)
        return parse_components(res.stdout) if res.ok else None

    def component_details(self) -> dict[str, ComponentInfo]:
        return parse_components(self._run(self.cli.component_list(), "component list").stdout)

    def components(self) -> dict[str, tuple[str, str]]:
        """{name: (version, state)} of every component the core lists."""
        return {n: (c.version, c.state) for n, c in self.component_details().items()}

    def wait_state(self, name: str, states: Iterable[str], timeout: float) -> ComponentInfo:
        """Poll ``component list`` until ``name`` is in one of ``states``."""
        wanted = set(states)
        seen: list[str] = []

        def check() -> ComponentInfo | None:
            info = self.component_details().get(name)
            state = info.state if info else "absent"
            if not seen or seen[-1] != state:
                seen.append(state)
            return info if info is not None and info.state in wanted else None

        return self._wait(
            check,
            timeout,
            f"{name} to be {'/'.join(sorted(wanted))}",
            lambda: f"states seen: {' -> '.join(seen)}",
        )

    def wait_absent(self, name: str, timeout: float) -> None:
        self._wait(
            lambda: True if name not in self.component_details() else None, timeout, f"{name} to be removed"
        )

    # -- logs -------------------------------------------------------------------------------------
    def read(self, path: str) -> str:
        argv = self.cli.read_argv(path)
        if argv is None:
            return self.target.read_text(path) or ""
        res = self.target.run(argv, timeout=60)
        return res.stdout if res.ok else ""

    def core_log(self) -> str:
        return self.read(self.cli.log_path())

    def component_log(self, name: str) -> str:
        return self.read(self.cli.log_path(name))

    def transitions(self, name: str) -> list[logparse.Transition]:
        return logparse.transitions(self.core_log(), name)

    # -- helpers ----------------------------------------------------------------------------------
    def _wait(
        self,
        check: Callable[[], T | None],
        timeout: float,
        what: str,
        last_seen: Callable[[], str] | None = None,
    ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got is not None:
                return got
            if time.monotonic() > deadline:
                seen = last_seen() if last_seen else ""
                tail = "\n".join(self.core_log().splitlines()[-15:])
                raise NucleusTimeout(
                    f"{self.target.name}: timed out after {timeout:g} s waiting for {what}"
                    + (f"; {seen}" if seen else "")
                    + f"\nlast lines of {self.cli.log_path()}:\n{tail}"
                )
            time.sleep(POLL_S)

    def describe(self, argv: Sequence[str]) -> str:
        return shell_line(argv)
