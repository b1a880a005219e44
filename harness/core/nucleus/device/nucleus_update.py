"""A deployment that updates the nucleus itself (V2 core-software update), as a generator the loop runs.

Why its own module: the update spans two or three processes (the running version prepares, the loader
switches, the new version checks its health and reports) and must survive a cut at any step, so its
progress lives in a durable record ``deployments/ongoing/<deploymentId>.json`` with a ``stage``:

- ``bootstrap``: components stopped, launch directory ``alts/<deploymentId>`` being prepared (a restart in
  this stage redoes the preparation);
- ``activating``: ``alts/new`` is set, the nucleus exited with 100 for the loader to switch. The version
  that boots next reports: the new one checks health (every auto-start component RUNNING or FINISHED,
  none BROKEN, within ``health_check_timeout``) and reports SUCCESSFUL (``alts/old`` dropped), or rolls
  back; the old one (the loader rolled back after three failed starts) reports FAILED_ROLLBACK_COMPLETE;
- ``rollback``: the new version was unhealthy and switched ``current`` back to ``old``; the old version
  reports FAILED_ROLLBACK_COMPLETE when healthy, else FAILED_UNABLE_TO_ROLLBACK.

The time the core was unavailable (from the exit for the update to the CLI answering again, summed over
restarts) is kept in the record and in the deployment's plan (``nucleusUpdate``) for the report.
A same-or-older version is refused unless ``--update-config`` sets the nucleus's ``allowDowngrade``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .alts import BROKEN as BROKEN_LINK
from .alts import NEW, OLD, LaunchDirs
from .cutpoints import cutpoint
from .deploy import FAILED, SUCCEEDED, DeploymentFailed, DeploymentRecord
from .lifecycle import BROKEN, READY, RUNNING
from .persist import fsync_dir, read_json_durably, sync_tree, write_json_durably
from .release import load_release
from .semver import VersionError, parse_version

if TYPE_CHECKING:
    from .daemon import Nucleus

NUCLEUS_NAME = "aws.greengrass.Nucleus"
RESTART = 100
BOOTSTRAP, ACTIVATING, ROLLBACK = "bootstrap", "activating", "rollback"


def is_nucleus_update(request: dict[str, Any]) -> bool:
    return NUCLEUS_NAME in (request.get("merge") or {})


def _fail(cause: str, *stack: str) -> DeploymentFailed:
    return DeploymentFailed(cause, ["NUCLEUS_UPDATE_ERROR", *stack], ["NUCLEUS_ERROR"])


class NucleusUpdate:
    """One nucleus-update deployment, run by ``Nucleus._deploy``."""

    def __init__(self, nucleus: Nucleus, rec: DeploymentRecord) -> None:
        self.n = nucleus
        self.rec = rec
        self.alts = LaunchDirs(nucleus.root, atomic=not nucleus.settings.has("non_atomic_launch_switch"))
        self.path = os.path.join(nucleus.root, "deployments", "ongoing", f"{rec.id}.json")
        self.version = str(rec.request["merge"][NUCLEUS_NAME])

    # -- the durable record ---------------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        data = read_json_durably(self.path)
        return data if isinstance(data, dict) else None

    def save(self, state: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_json_durably(self.path, state, atomic=self.n.atomic)
        self.rec.plan = {"nucleusUpdate": state}
        self.n._save(self.rec)

    def finish(self, state: dict[str, Any], status: str, detailed: str, cause: str = "") -> None:
        state["outcome"] = detailed
        state["finishedAt"] = time.time()
        self.rec.plan = {"nucleusUpdate": state}
        failure = _fail(cause) if cause else None
        cutpoint("deployment.finishing")
        self.n._finish(self.rec, status, detailed, failure)
        for suffix in ("", "~"):
            try:
                os.unlink(self.path + suffix)
            except FileNotFoundError:
                pass

    def restart(self, state: dict[str, Any], why: str) -> None:
        """Exit with 100 so the loader launches ``alts`` again; the down time starts now."""
        state["downSince"] = time.time()
        self.save(state)
        self.n.log("INFO", "nucleus-restart", reason=why, deploymentId=self.rec.id, exitCode=RESTART)
        self.n.exit_code = RESTART
        self.n.stop_requested = True

    # -- the generator ------------------------------------------------------------------------------
    def run(self) -> Generator[bool, None, None]:
        state = self.load()
        if state is not None and state.get("downSince"):
            state["unavailableS"] = round(
                float(state.get("unavailableS", 0.0)) + time.time() - float(state["downSince"]), 3
            )
            state["downSince"] = None
            self.save(state)
        if state is None or state.get("stage") == BOOTSTRAP:
            yield from self.prepare(state)
        elif state.get("stage") == ACTIVATING:
            yield from self.activate(state)
        else:
            yield from self.after_rollback(state)

    def prepare(self, resumed: dict[str, Any] | None) -> Generator[bool, None, None]:
        current = self.n.version
        try:
            self.check_version(current)
            tarball = self.artifact()
        except DeploymentFailed as exc:
            self.n._finish(self.rec, FAILED, "FAILED_NO_STATE_CHANGE", exc)
            return
        for comp in self.n.components.values():
            comp.request_stop()
        while not all(c.settled for c in self.n.components.values()):
            yield False
        cutpoint("deployment.nucleus_components_stopped")
        state: dict[str, Any] = {
            "deploymentId": self.rec.id,
            "from": (resumed or {}).get("from", current),
            "to": self.version,
            "fromLaunchDir": self.alts.target("current"),
            "stage": BOOTSTRAP,
            "unavailableS": (resumed or {}).get("unavailableS", 0.0),
            "startedAt": (resumed or {}).get("startedAt", time.time()),
        }
        self.save(state)
        cutpoint("deployment.nucleus_persisted")
        try:
            self.unpack(tarball)
        except (OSError, tarfile.TarError, DeploymentFailed) as exc:
            failure = exc if isinstance(exc, DeploymentFailed) else _fail(f"cannot unpack {tarball}: {exc}")
            for comp in self.n.components.values():
                comp.goal = RUNNING
            self.finish(state, FAILED, "FAILED_NO_STATE_CHANGE", failure.cause)
            return
        cutpoint("launch.unpacked")
        self.alts.set(NEW, self.rec.id)
        cutpoint("launch.new_linked")
        cutpoint("bootstrap")
        state["stage"] = ACTIVATING
        self.restart(state, f"activate nucleus {self.version}")
        yield True

    def check_version(self, current: str) -> None:
        try:
            new, now = parse_version(self.version), parse_version(current)
        except VersionError as exc:
            raise _fail(str(exc)) from None
        update = self.rec.request.get("configUpdate") or {}
        merge = (update.get(NUCLEUS_NAME) or {}).get("MERGE") or {}
        allowed = merge.get("allowDowngrade") is True
        if new <= now and not allowed and not self.n.settings.has("downgrade_unchecked"):
            same = "the same as" if new == now else "older than"
            raise _fail(
                f"refusing nucleus {self.version}: it is {same} the running {current} (set "
                f'{NUCLEUS_NAME} configuration "allowDowngrade": true to allow it)',
                "NUCLEUS_DOWNGRADE_REFUSED",
            )

    def artifact(self) -> str:
        artifact_dir = str(self.rec.request.get("artifactDir") or "")
        recipe_dir = str(self.rec.request.get("recipeDir") or "")
        if recipe_dir:
            self.n.store.import_recipes(recipe_dir)
        directory = os.path.join(artifact_dir, NUCLEUS_NAME, self.version) if artifact_dir else ""
        names = os.listdir(directory) if os.path.isdir(directory) else []
        found = sorted(f for f in names if f.endswith(".tar.gz"))
        if not found:
            raise _fail(
                f"no nucleus package for {self.version}: expected {directory or '--artifactDir'}"
                f"/{NUCLEUS_NAME}/{self.version}/*.tar.gz",
                "ARTIFACT_MISSING",
            )
        return os.path.join(directory, found[0])

    def unpack(self, tarball: str) -> None:
        dest = self.alts.link(self.rec.id)
        part = dest + ".part"
        shutil.rmtree(part, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(part)
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in member.name.split("/") or not (
                    member.isfile() or member.isdir()
                ):
                    raise _fail(f"{tarball}: unsafe member {member.name!r}", "ARTIFACT_INVALID")
            tar.extractall(part)  # members checked above
        release = load_release(os.path.join(part, "distro", "release.json"))
        if release["version"] != self.version or not os.path.isdir(os.path.join(part, "distro", "lib")):
            shutil.rmtree(part, ignore_errors=True)
            raise _fail(
                f"{tarball}: is nucleus {release['version']}, not {self.version} (or has no distro/lib)",
                "ARTIFACT_INVALID",
            )
        sync_tree(part)  # the files must be on disk before any link can point at them
        os.replace(part, dest)
        fsync_dir(self.alts.dir)

    # -- after the restart --------------------------------------------------------------------------
    def health(self) -> Generator[bool, None, str]:
        """'' when every auto-start component is RUNNING/FINISHED (stable), else why not."""
        deadline = time.monotonic() + self.n.settings.health_check_timeout
        while True:
            now = time.monotonic()
            comps = list(self.n.components.items())
            broken = [name for name, c in comps if c.state == BROKEN]
            waiting = [
                f"{name} ({c.state})"
                for name, c in comps
                if c.state not in READY or now - c.changed_at < self.n.settings.deployment_stable
            ]
            if self.n.settings.has("health_check_always_passes"):
                return ""
            if broken:
                return f"component(s) {', '.join(broken)} BROKEN"
            if not waiting:
                return ""
            if now > deadline:
                return f"not healthy after {self.n.settings.health_check_timeout:g} s: {', '.join(waiting)}"
            yield False

    def activate(self, state: dict[str, Any]) -> Generator[bool, None, None]:
        running = self.n.version
        if running != state["to"]:  # the loader rolled back: the new version never came up
            why = "" if running == state["from"] else f"unexpected version {running}"
            problem = yield from self.health()
            self.alts.drop(BROKEN_LINK)
            if why or problem:
                self.finish(state, FAILED, "FAILED_UNABLE_TO_ROLLBACK", why or problem)
                return
            panic = "restart_panic" if self.alts.panicked() else "no restart_panic marker"
            self.finish(
                state,
                FAILED,
                "FAILED_ROLLBACK_COMPLETE",
                f"nucleus {state['to']} did not start ({panic}); rolled back to {running}",
            )
            return
        problem = yield from self.health()
        if not problem:
            cutpoint("activation.before_status")
            self.alts.drop(OLD)
            self.alts.drop(BROKEN_LINK)
            self.alts.clear_panic()
            self.finish(state, SUCCEEDED, "SUCCESSFUL")
            return
        self.n.log("ERROR", "nucleus-unhealthy", version=running, reason=problem, deploymentId=self.rec.id)
        if self.n.settings.has("rollback_disabled"):
            self.finish(state, FAILED, "FAILED_ROLLBACK_NOT_REQUESTED", f"nucleus {running}: {problem}")
            return
        state["stage"], state["reason"] = ROLLBACK, problem
        self.save(state)
        if not self.alts.rollback():
            self.finish(state, FAILED, "FAILED_UNABLE_TO_ROLLBACK", f"{problem}; no old launch directory")
            return
        self.restart(state, f"roll back to nucleus {state['from']}")
        yield True

    def after_rollback(self, state: dict[str, Any]) -> Generator[bool, None, None]:
        running = self.n.version
        if running != state["from"] and self.alts.rollback():  # a cut before the switch finished
            self.restart(state, f"roll back to nucleus {state['from']}")
            yield True
            return
        problem = yield from self.health()
        self.alts.drop(BROKEN_LINK)
        if running != state["from"] or problem:
            self.finish(state, FAILED, "FAILED_UNABLE_TO_ROLLBACK", problem or f"still on nucleus {running}")
            return
        self.finish(
            state,
            FAILED,
            "FAILED_ROLLBACK_COMPLETE",
            f"nucleus {state['to']} was unhealthy ({state.get('reason', '?')}); rolled back to {running}",
        )
