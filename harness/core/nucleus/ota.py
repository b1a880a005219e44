"""Core-software updates driven from the host: V2 (a nucleus deployment) and V1 (an OTA job).

Why one module: both produce the same report row (``CoreUpdate``: versions before and after, outcome,
how long the core was unavailable) so the scenarios and the report treat the generations alike.

- V2: ``update_core_v2`` packages a core version (``core_versions.package``), deploys it through
  greengrass-cli and waits through the restart(s); the unavailable time is the one the nucleus recorded
  (``deployments/<id>.json``, ``plan.nucleusUpdate.unavailableS``) or, for a core that records none, the
  longest gap the host saw in CLI answers (0 when it answered every poll: a refused update).
- V1: ``V1Ota`` prepares the V1 side of the reference core (the OTA agent's device file, the core's kept
  and lost state, ``ggc-daemon`` and the four managedRespawn scripts), and runs jobs of
  ``harness.cloud.jobs.JobsService`` on the target's ``ota-agent``, reporting each outcome back to the job.
"""

from __future__ import annotations

import json
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cloud.jobs import Execution, Job, JobsService
from harness.core.nucleus import core_versions
from harness.core.nucleus.cli_adapter import DeploymentInfo
from harness.core.nucleus.driver import NucleusCommandError, NucleusDriver
from harness.errors import CommandTimeout, InputError, TargetError
from harness.profiles import DeviceProfile
from harness.targets.base import Target

NUCLEUS = core_versions.NUCLEUS
#: How long the core's service may be stopped (not answering, not running) before an update is given up.
CORE_DOWN_S = 15.0
SCRIPTS = ("ggc_pre_update.sh", "ggc_post_update.sh", "ota_pre_update.sh", "ota_post_update.sh")
#: Ways the scenarios break one managedRespawn script (O3).
BAD_SCRIPTS = ("missing", "not_root_owned", "group_executable", "failing")
#: The V1 core state a core update keeps (checked byte for byte) and the state it loses.
KEPT = ("config/config.json", "config/group/group.json", "var/shadows/shadow.json")
LOST = ("var/credentials/cache.json", "var/queue/pending.json")


@dataclass
class CoreUpdate:
    """One update as the report shows it."""

    generation: str
    requested: str
    before: str
    after: str
    status: str
    outcome: str
    unavailable_s: float | None
    reason: str = ""
    ident: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "requested": self.requested,
            "version_before": self.before,
            "version_after": self.after,
            "status": self.status,
            "outcome": self.outcome,
            "unavailable_s": self.unavailable_s if self.unavailable_s is not None else "n/a",
            "reason": self.reason,
        }


def nucleus_version(driver: NucleusDriver) -> str:
    info = driver.component_details().get(NUCLEUS)
    return info.version if info else ""


def update_core_v2(
    driver: NucleusDriver, version: str, *, timeout: float, allow_downgrade: bool = False
) -> CoreUpdate:
    """Deploy nucleus ``version`` (from fixtures/core-versions) and wait for the outcome."""
    before = nucleus_version(driver)
    with tempfile.TemporaryDirectory(prefix="gg-core-") as tmp:
        pkg = core_versions.package(version, Path(tmp))
        update = {NUCLEUS: {"MERGE": {"allowDowngrade": True}}} if allow_downgrade else None
        dep = driver.deploy(
            recipe_dir=pkg.recipe_dir,
            artifact_dir=pkg.artifact_dir,
            merge={NUCLEUS: version},
            update_config=update,
        )
        gaps: list[float] = []
        started = time.monotonic()
        info = _wait_through_restart(driver, dep, timeout, gaps)
    after = _answering_version(driver, timeout=60)
    recorded = _recorded_update(driver, dep)
    unavailable = recorded.get("unavailableS")
    return CoreUpdate(
        generation="V2",
        requested=version,
        before=before,
        after=after,
        status=info.status,
        outcome=info.detailed_status,
        # the core's own record; else the host's view (0 when the CLI answered every poll, 4 a second)
        unavailable_s=float(unavailable) if unavailable is not None else (max(gaps) if gaps else 0.0),
        reason=info.failure_cause,
        ident=dep,
        details={"took_s": round(time.monotonic() - started, 2), "record": recorded},
    )


def _wait_through_restart(
    driver: NucleusDriver, dep: str, timeout: float, gaps: list[float]
) -> DeploymentInfo:
    """``wait_deployment`` through restarts, noting how long the CLI did not answer (host view).

    A core whose service stopped (not merely restarting) for ``CORE_DOWN_S`` ends the wait: its update
    cannot finish, and the scenario reports it as such instead of waiting for the whole timeout.
    """
    down_since: list[float] = []
    stopped_since: list[float] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = driver.deployment(dep)
            if down_since:
                gaps.append(round(time.monotonic() - down_since.pop(), 3))
            stopped_since.clear()
            if info.terminal:
                return driver.wait_deployment(dep, 30)
        except NucleusCommandError:
            if not down_since:
                down_since.append(time.monotonic())
            if driver.is_running():
                stopped_since.clear()
            elif not stopped_since:
                stopped_since.append(time.monotonic())
            elif time.monotonic() - stopped_since[0] > CORE_DOWN_S:
                return DeploymentInfo(
                    id=dep,
                    status="IN_PROGRESS",
                    detailed_status="CORE_DOWN",
                    failure_cause=f"the core stopped during the update and was not running for "
                    f"{CORE_DOWN_S:g} s (see logs/loader.log)",
                )
        if time.monotonic() > deadline:
            return driver.wait_deployment(dep, 1, through_restart=True)  # raises with the last state
        time.sleep(0.25)


def _answering_version(driver: NucleusDriver, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return nucleus_version(driver)
        except NucleusCommandError:
            if time.monotonic() > deadline or not driver.is_running():
                return ""
            time.sleep(0.5)


def _recorded_update(driver: NucleusDriver, dep: str) -> dict[str, Any]:
    text = driver.read(f"{driver.cli.root}/deployments/{dep}.json")
    try:
        plan = (json.loads(text) or {}).get("plan") or {}
    except ValueError:
        return {}
    rec = plan.get("nucleusUpdate") if isinstance(plan, dict) else None
    return rec if isinstance(rec, dict) else {}


class V1Ota:
    """The V1 OTA side of a reference core: prepared once, then jobs run on it."""

    def __init__(self, driver: NucleusDriver, profile: DeviceProfile, thing: str) -> None:
        self.driver = driver
        self.target: Target = driver.target
        self.root = driver.cli.root
        self.profile = profile
        self.thing = thing

    def _put(self, rel: str, text: str, mode: int) -> None:
        with tempfile.NamedTemporaryFile("w", delete=False, encoding="utf-8") as fh:
            fh.write(text)
        try:
            self.target.put(Path(fh.name), f"{self.root}/{rel}", mode=mode)
        finally:
            Path(fh.name).unlink()

    def _sh(self, script: str, what: str) -> None:
        res = self.target.run(["sh", "-c", script, "sh", self.root], timeout=60)
        if not res.ok:
            raise TargetError(f"{self.target.name}: {what} failed:\n{res.evidence()}")

    def setup(self, *, managed_respawn: bool = True, min_free_bytes: int | None = None) -> None:
        """Device file (OS/architecture from the profile), core state, ggc-daemon and the four scripts."""
        device: dict[str, Any] = {"os": self.profile.os, "architecture": self.profile.arch}
        if min_free_bytes is not None:
            device["minFreeBytes"] = min_free_bytes
        self._put("ota/device.json", json.dumps(device) + "\n", 0o644)
        config = {"coreThing": {"thingName": self.thing}, "managedRespawn": managed_respawn}
        self._put("config/config.json", json.dumps(config, indent=1) + "\n", 0o644)
        group = {"group": f"{self.thing}-group", "devices": [f"{self.thing}-dev-1"]}
        self._put("config/group/group.json", json.dumps(group) + "\n", 0o644)
        self._put("var/shadows/shadow.json", json.dumps({"state": {"reported": {"on": True}}}) + "\n", 0o600)
        self._put("var/credentials/cache.json", json.dumps({"token": "cached"}) + "\n", 0o600)
        self._put("var/queue/pending.json", json.dumps([{"topic": "t", "n": 1}]) + "\n", 0o600)
        root = shlex.quote(self.root)
        daemon = GGC_DAEMON.replace("@ROOT@", root)
        if "broker_not_restarted" in self._faults():
            daemon = daemon.replace('if [ -f "$R/config/mosquitto.conf" ]; then', "if false; then")
        self._put("bin/ggc-daemon", daemon, 0o755)
        self.restore_scripts()

    def _faults(self) -> set[str]:
        cli = self.driver.cli
        faults = set(getattr(cli, "faults", ()))
        settings = getattr(cli, "settings", None)
        return faults | set(getattr(settings, "faults", ()))

    def restore_scripts(self) -> None:
        root = shlex.quote(self.root)
        bodies = {
            "ggc_pre_update.sh": f"exec {root}/bin/ggc-daemon stop\n",
            "ggc_post_update.sh": f"exec {root}/bin/ggc-daemon start\n",
            "ota_pre_update.sh": "echo ota pre-update\n",
            "ota_post_update.sh": "echo ota post-update\n",
        }
        for name, body in bodies.items():
            self._put(f"usr/scripts/{name}", f"#!/bin/sh\n# managedRespawn: {name}\n{body}", 0o700)
        self._sh('chown 0:0 "$1"/usr/scripts/*.sh && chmod 0700 "$1"/usr/scripts/*.sh', "restoring scripts")

    def break_script(self, name: str, how: str) -> None:
        if name not in SCRIPTS:
            raise InputError(f"managedRespawn script {name!r}: allowed: {', '.join(SCRIPTS)}")
        path = f'"$1"/usr/scripts/{name}'
        actions = {
            "missing": f"rm -f {path}",
            "not_root_owned": f"chown 65534 {path}",
            "group_executable": f"chmod 0755 {path}",
            "failing": f"printf '#!/bin/sh\\necho broken >&2\\nexit 3\\n' > {path}",
        }
        if how not in actions:
            raise InputError(f"break_script how={how!r}: allowed: {', '.join(BAD_SCRIPTS)}")
        self._sh(actions[how], f"breaking {name} ({how})")

    def state_digest(self) -> dict[str, str]:
        """sha256 of each kept and lost file ('' when absent), and the greengrass.log's first line."""
        out: dict[str, str] = {}
        for rel in (*KEPT, *LOST):
            res = self.target.run(["sha256sum", f"{self.root}/{rel}"], timeout=60)
            out[rel] = res.stdout.split()[0] if res.ok and res.stdout.strip() else ""
        log = self.target.run(["head", "-n", "1", f"{self.root}/logs/greengrass.log"], timeout=60)
        out["logs/greengrass.log:first-line"] = log.stdout.strip()
        return out

    def run_job(self, jobs: JobsService, job: Job, *, timeout: float) -> tuple[Execution, CoreUpdate]:
        """The device takes the job, the OTA agent applies it, the outcome goes back to the job."""
        document = jobs.start(job.id, self.thing)
        remote_pkg = f"{self.root}/ota/downloads/{job.id}.tar.gz"
        self.target.put(job.package, remote_pkg, mode=0o600)
        document["package"] = remote_pkg
        self._put(f"ota/jobs/{job.id}.json", json.dumps(document, indent=1) + "\n", 0o600)
        doc_path = f"{self.root}/ota/jobs/{job.id}.json"
        argv = [f"{self.root}/bin/ota-agent", "--root", self.root, "--job", doc_path]
        try:
            res = self.target.run(argv, timeout=timeout)
        except CommandTimeout as exc:
            jobs.report(job.id, self.thing, "TIMED_OUT", str(exc)[-500:])
            execution = jobs.execution(job.id, self.thing)
            return execution, CoreUpdate("V1", document["version"], "", "", "TIMED_OUT", "TIMED_OUT", None)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        try:
            result = json.loads(lines[-1]) if res.ok and lines else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            jobs.report(job.id, self.thing, "FAILED", f"the OTA agent gave no outcome:\n{res.evidence()}")
            execution = jobs.execution(job.id, self.thing)
            return execution, CoreUpdate("V1", document["version"], "", "", "FAILED", "FAILED", None)
        status = str(result.get("status", "FAILED"))
        jobs.report(job.id, self.thing, status, str(result.get("reason", "")), outcome=result)
        update = CoreUpdate(
            generation="V1",
            requested=str(document["version"]),
            before=str(result.get("from", "")),
            after=str(result.get("after", "")),
            status=status,
            outcome=status,
            unavailable_s=float(result.get("unavailableS", 0.0)),
            reason=str(result.get("reason", "")),
            ident=job.id,
            details=result,
        )
        return jobs.execution(job.id, self.thing), update


#: The V1 core daemon control of the reference core (its greengrassd): the nucleus and, when the core
#: runs one, its MQTT broker (``config/mosquitto.conf``, pid in ``run/broker.pid``).
GGC_DAEMON = """#!/bin/sh
# ggc-daemon start|stop|status: the core daemon of the harness reference core (nucleus + MQTT broker)
R=@ROOT@
case "$1" in
  stop)
    if [ -s "$R/run/broker.pid" ]; then
      pid=$(cat "$R/run/broker.pid")
      kill "$pid" 2>/dev/null
      i=0
      while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
    fi
    exec "$R/bin/nucleus" --root "$R" --stop --timeout 30 ;;
  start)
    if [ -f "$R/config/mosquitto.conf" ]; then
      ( ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec mosquitto -c "$R/config/mosquitto.conf" -d ) || exit 1
    fi
    exec "$R/bin/nucleus" --root "$R" --daemon --timeout 60 ;;
  status)
    exec "$R/bin/nucleus" --root "$R" --status ;;
  *)
    echo "usage: ggc-daemon start|stop|status" >&2
    exit 2 ;;
esac
"""
