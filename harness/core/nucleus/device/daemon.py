"""The nucleus daemon: component lifecycles, local deployments and the CLI socket, in one thread.

Why one thread: every lifecycle rule is a state transition, and a single loop (``selectors`` over the CLI
socket, the steps' output pipes and a signal wake-up pipe) makes their order deterministic and the agent
cheap enough to run under qemu-user. A deployment is a generator the loop resumes; it waits on component
states without blocking anything else.

Layout under ``<root>`` (the Greengrass one where there is one): ``config/config.tlog``,
``config/agent.json`` (the agent's settings), ``packages/{recipes,artifacts,artifacts-unarchived}``,
``work/<Component>``, ``logs/greengrass.log``, ``logs/<Component>.log``, ``deployments/<id>.json``,
``run/nucleus.pid`` and the CLI socket ``nucleus-cli.socket``.

Started through ``ggnucleus.control`` (``<root>/bin/nucleus --root R --daemon [--fault F]...``: the
service), which execs the loader of the current launch directory (``alts/current/distro/bin/loader``,
``loader.py``); the loader runs this daemon from the launch directory ``alts/current``. The
version is that launch directory's ``release.json`` (``release.py``); a deployment that merges
``aws.greengrass.Nucleus`` is a core-software update (``nucleus_update.py``).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Generator
from typing import IO, Any

from . import logs
from .control import kernel_pid_path, pid_path, read_pid, socket_path
from .cutpoints import cutpoint
from .deploy import (
    CANCELED,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    SUCCEEDED,
    TERMINAL,
    DeploymentFailed,
    DeploymentRecord,
    Plan,
    Planner,
    Store,
)
from .lifecycle import BROKEN, FINISHED, READY, RUNNING, STARTING, Component, ComponentSpec, StepProcess
from .nucleus_update import NUCLEUS_NAME, NucleusUpdate, is_nucleus_update
from .persist import CHANGED, REMOVED, Change, ConfigStore, read_json_durably, write_json_durably
from .recipe import Step, platform_of
from .release import load_release
from .semver import is_version
from .settings import AgentSettings

#: Built-in services a ``component list`` shows besides deployed components (as a real core does).
BUILTINS = {NUCLEUS_NAME: FINISHED, "aws.greengrass.Cli": RUNNING, "DeploymentService": RUNNING}
MAX_REQUEST = 1 << 20


class Nucleus:
    """Everything the agent runs, owned by its main loop."""

    def __init__(self, root: str, settings: AgentSettings) -> None:
        self.root = os.path.abspath(root)
        self.settings = settings
        self.release = load_release()
        self.version = str(self.release["version"])
        #: 100 asks the loader to launch ``alts/current`` again (a nucleus update or its rollback).
        self.exit_code = 0
        self.atomic = not settings.has("non_atomic_config_write")
        for d in ("config", "logs", "packages", "work", "deployments", "run"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self.core_log = logs.LogFile(os.path.join(self.root, "logs", "greengrass.log"))
        self.component_logs: dict[str, logs.LogFile] = {}
        self.config = ConfigStore(
            os.path.join(self.root, "config"), atomic=self.atomic, compact_after=settings.compact_after
        )
        self.store = Store(self.root, atomic=self.atomic)
        self.platform = platform_of(os.uname().machine)
        self.components: dict[str, Component] = {}
        self.deployments: dict[str, DeploymentRecord] = {}
        self.queue: list[str] = []
        self.active: Generator[bool, None, None] | None = None
        self.active_id = ""
        self.selector = selectors.DefaultSelector()
        self.stop_requested = False
        self.shutdown_deadline: float | None = None
        self.server: socket.socket | None = None
        self._wake_r: socket.socket | None = None

    # -- logging ----------------------------------------------------------------------------------
    def log(
        self,
        level: str,
        event: str,
        thread: str = "main",
        logger: str = "com.aws.greengrass.Nucleus",
        **fields: object,
    ) -> None:
        self.core_log.write(logs.line(level, thread, logger, event, logs.kv(**fields) if fields else ""))

    def component_log(self, name: str) -> logs.LogFile:
        if name not in self.component_logs:
            self.component_logs[name] = logs.LogFile(os.path.join(self.root, "logs", f"{name}.log"))
        return self.component_logs[name]

    def log_state(self, comp: Component, old: str, new: str, code: str, reason: str) -> None:
        self.log(
            "INFO",
            "service-set-state",
            thread=f"{comp.name}-lifecycle",
            logger=logs.SERVICE_LOGGER,
            serviceName=comp.name,
            currentState=old,
            newState=new,
        )

    def log_error(self, comp: Component, code: str, reason: str) -> None:
        self.log(
            "ERROR",
            "service-errored",
            thread=f"{comp.name}-lifecycle",
            logger=logs.SERVICE_LOGGER,
            serviceName=comp.name,
            currentState=comp.state,
            reason=reason,
            statusCode=code,
        )

    # -- what components ask of the nucleus -------------------------------------------------------
    @property
    def thing_name(self) -> str:
        return str(self.config.get(["system", "thingName"], "") or "")

    def prepare_work_dir(self, comp: Component) -> None:
        os.makedirs(os.path.join(self.root, "work", comp.name), exist_ok=True)

    def spawn(self, comp: Component, step_name: str, step: Step, timeout: float | None) -> StepProcess:
        env = dict(os.environ)
        env.update(
            {
                "AWS_IOT_THING_NAME": self.thing_name,
                "GG_ROOT_PATH": self.root,
                "SVCUID": comp.name,
            }
        )
        env.update(comp.spec.setenv)
        env.update(step.setenv)
        if self.release["defect"] == "breaks_components":
            env["PATH"] = "/nonexistent"  # the release's regression: no component finds its commands
        work = os.path.join(self.root, "work", comp.name)
        os.makedirs(work, exist_ok=True)
        proc = StepProcess(
            comp.name,
            step_name,
            step.script,
            cwd=work,
            env=env,
            timeout=timeout,
            on_line=self._on_line,
            on_eof=self._unwatch,
        )
        for name, fh in proc.streams.items():
            self.selector.register(fh, selectors.EVENT_READ, ("pipe", proc, name))
        self.component_log(comp.name).write(
            logs.line(
                "INFO",
                f"{comp.name}-lifecycle",
                comp.name,
                "shell-runner-start",
                logs.kv(
                    scriptName=proc.script_name,
                    serviceName=comp.name,
                    currentState=comp.state,
                    command=json.dumps([step.script]),
                ),
            )
        )
        return proc

    def _on_line(self, proc: StepProcess, stream: str, text: str) -> None:
        if self.settings.has("component_output_dropped"):
            return
        comp = self.components.get(proc.component)
        state = comp.state if comp is not None else "FINISHED"
        self.component_log(proc.component).write(
            logs.line(
                "INFO" if stream == "stdout" else "WARN",
                "Copier",
                proc.component,
                f"{stream}. {text}",
                logs.kv(scriptName=proc.script_name, serviceName=proc.component, currentState=state),
            )
        )

    def _unwatch(self, fh: IO[bytes]) -> None:
        try:
            self.selector.unregister(fh)
        except (KeyError, ValueError):
            pass

    def dependencies_ready(self, comp: Component) -> bool:
        for dep in comp.spec.dependencies:
            other = self.components.get(dep)
            if other is None or other.state not in READY:
                return False
        return True

    def dependency_left_ready(self, comp: Component) -> None:
        """A HARD dependency stopped being RUNNING/FINISHED: its running dependents restart."""
        if self.settings.has("dependents_not_restarted"):
            return
        for other in self.components.values():
            if other is comp or other.spec.dependencies.get(comp.name) != "HARD":
                continue
            if other.state in (STARTING, RUNNING) and other.goal == RUNNING and other.pending is None:
                other.request("restart")
                self.log(
                    "INFO",
                    "service-restart",
                    thread=f"{other.name}-lifecycle",
                    logger=logs.SERVICE_LOGGER,
                    serviceName=other.name,
                    reason=f"hard dependency {comp.name} is {comp.state}",
                )

    # -- start ------------------------------------------------------------------------------------
    def boot(self) -> None:
        self.config.load()
        self.log(
            "INFO",
            "nucleus-start",
            version=self.version,
            root=self.root,
            faults=",".join(self.settings.faults) or "none",
        )
        self.log("INFO", "config-loaded", report=self.config.load_report)
        changes: list[Change] = []
        if self.settings.thing_name and self.thing_name != self.settings.thing_name:
            changes.append((["system", "thingName"], CHANGED, self.settings.thing_name))
        if self.config.get(["system", "rootpath"]) != self.root:
            changes.append((["system", "rootpath"], CHANGED, self.root))
        if self.config.get(["services", NUCLEUS_NAME, "version"]) != self.version:
            changes.append(
                (
                    ["services", NUCLEUS_NAME],
                    CHANGED,
                    {"componentType": "NUCLEUS", "version": self.version},
                )
            )
        self.config.commit(changes)
        for name, data in (self.config.get(["services"], {}) or {}).items():
            if name in ("main", NUCLEUS_NAME) or not isinstance(data, dict):
                continue
            self.components[name] = Component(ComponentSpec.from_config(name, data), self)
        self._load_deployments()
        self._listen()

    def _load_deployments(self) -> None:
        directory = os.path.join(self.root, "deployments")
        # a cut between the renames of a metadata update leaves only X~: read it (read_json_durably does)
        names = {f[:-1] if f.endswith(".json~") else f for f in os.listdir(directory)}
        for f in sorted(n for n in names if n.endswith(".json")):
            data = read_json_durably(os.path.join(directory, f))
            if isinstance(data, dict) and "id" in data:
                rec = DeploymentRecord.from_json(data)
                self.deployments[rec.id] = rec
        pending = [r for r in self.deployments.values() if r.status not in TERMINAL]
        for rec in sorted(pending, key=lambda r: r.created):
            self.queue.append(rec.id)
            self.log("INFO", "deployment-resume", deploymentId=rec.id, status=rec.status)

    def _listen(self) -> None:
        path = socket_path(self.root)
        if len(path.encode()) > 100:
            raise OSError(f"CLI socket path {path} is too long for a Unix socket (100 bytes at most)")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        os.chmod(path, 0o660)
        server.listen(16)
        server.setblocking(False)
        self.server = server
        self.selector.register(server, selectors.EVENT_READ, ("server",))
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wake_r = wake_r
        self._wake_w = wake_w
        self.selector.register(wake_r, selectors.EVENT_READ, ("wake",))
        signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop when a step exits
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)

    def _on_stop_signal(self, *_: object) -> None:
        self.stop_requested = True

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            for key, _ in self.selector.select(self.settings.tick):
                kind = key.data[0]
                if kind == "server":
                    self._accept()
                elif kind == "wake":
                    try:
                        while key.fileobj.recv(512):  # type: ignore[union-attr]
                            pass
                    except (BlockingIOError, OSError):
                        pass
                elif kind == "pipe":
                    key.data[1].read(key.data[2])
            self._advance()
            if self.stop_requested and self._shutdown_done():
                break
        self.close()

    def _advance(self) -> None:
        for _ in range(200):
            changed = False
            for comp in list(self.components.values()):
                changed = comp.tick() or changed
            for name in [n for n, c in self.components.items() if c.removing and c.settled]:
                del self.components[name]
                self.log("INFO", "service-removed", serviceName=name)
                changed = True
            if not self.stop_requested:
                changed = self._deployment_tick() or changed
            if not changed:
                return

    def _shutdown_done(self) -> bool:
        now = time.monotonic()
        if self.shutdown_deadline is None:
            self.log("INFO", "nucleus-shutdown", components=len(self.components))
            for comp in self.components.values():
                comp.request_stop()
            s = self.settings
            self.shutdown_deadline = now + min(60.0, s.shutdown_timeout + s.kill_grace + 2.0)
            self._advance()
        return all(c.settled for c in self.components.values()) or now > self.shutdown_deadline

    def close(self) -> None:
        if self.server is not None:
            try:
                self.selector.unregister(self.server)
            except (KeyError, ValueError):
                pass
            self.server.close()
            self.server = None
            try:
                os.unlink(socket_path(self.root))
            except FileNotFoundError:
                pass
        self.log("INFO", "nucleus-exit")

    # -- deployments ------------------------------------------------------------------------------
    def _save(self, rec: DeploymentRecord) -> None:
        rec.updated = time.time()
        write_json_durably(
            os.path.join(self.root, "deployments", f"{rec.id}.json"), rec.to_json(), atomic=self.atomic
        )

    def _deployment_tick(self) -> bool:
        if self.active is None:
            if not self.queue:
                return False
            rec = self.deployments[self.queue.pop(0)]
            self.active, self.active_id = self._deploy(rec), rec.id
        try:
            return next(self.active)
        except StopIteration:
            self.active, self.active_id = None, ""
            return True

    def _cancel(self, deployment_id: str) -> dict[str, Any]:
        """``deployment cancel``: a queued one is dropped, the running one stops waiting; components stay."""
        rec = self.deployments.get(deployment_id)
        if rec is None:
            return {"error": f"ResourceNotFoundError: no local deployment with id {deployment_id}"}
        if rec.status in TERMINAL:
            return {"error": f"deployment {deployment_id} is already {rec.status}"}
        if deployment_id in self.queue:
            self.queue.remove(deployment_id)
        if self.active is not None and self.active_id == deployment_id:
            self.active.close()
            self.active, self.active_id = None, ""
        self._finish(rec, CANCELED, "CANCELED")
        return {"message": f"Successfully canceled local deployment {deployment_id}"}

    def _finish(
        self, rec: DeploymentRecord, status: str, detailed: str, failure: DeploymentFailed | None = None
    ) -> None:
        rec.status, rec.detailed = status, detailed
        if failure is not None:
            rec.cause, rec.error_stack, rec.error_types = failure.cause, failure.stack, failure.types
        self._save(rec)
        self.log(
            "INFO" if status == SUCCEEDED else "ERROR",
            "deployment-finished",
            logger="com.aws.greengrass.deployment.DeploymentService",
            deploymentId=rec.id,
            status=status,
            detailedStatus=detailed,
            cause=rec.cause or "-",
        )

    def _deploy(self, rec: DeploymentRecord) -> Generator[bool, None, None]:
        rec.status = IN_PROGRESS
        self._save(rec)
        self.log(
            "INFO",
            "deployment-start",
            logger="com.aws.greengrass.deployment.DeploymentService",
            deploymentId=rec.id,
        )
        yield True
        if is_nucleus_update(rec.request):
            yield from NucleusUpdate(self, rec).run()
            return
        resumed = rec.plan is not None
        try:
            if rec.plan is None:
                current = {n: (c.next_spec or c.spec) for n, c in self.components.items() if not c.removing}
                roots = dict(self.config.get(["services", "main", "dependencies"], {}) or {})
                planner = Planner(self.store, self.platform, self.thing_name, current, roots)
                plan = planner.plan(rec.request)
                rec.plan = plan.to_json()
                self._save(rec)
                cutpoint("deployment.planned")
            else:
                plan = Plan.from_json(rec.plan)
        except DeploymentFailed as exc:
            self._finish(rec, FAILED, "FAILED_NO_STATE_CHANGE", exc)
            return
        except Exception as exc:  # a bug must fail the deployment, not kill the nucleus
            self.log(
                "ERROR",
                "deployment-error",
                deploymentId=rec.id,
                error=traceback.format_exc(limit=3).replace("\n", " | "),
            )
            self._finish(
                rec,
                FAILED,
                "FAILED_NO_STATE_CHANGE",
                DeploymentFailed(f"internal error: {exc}", ["NUCLEUS_ERROR"], ["NUCLEUS_ERROR"]),
            )
            return
        self._commit(plan)
        cutpoint("deployment.committed")
        self._apply(plan, resumed)
        cutpoint("deployment.applied")
        yield True
        deadline = time.monotonic() + self.settings.deployment_timeout
        while True:
            now = time.monotonic()
            comps = [(n, self.components.get(n)) for n in plan.services]
            broken = [n for n, c in comps if c is not None and c.state == BROKEN and c.pending is None]
            if broken:
                self._finish(
                    rec,
                    FAILED,
                    "FAILED_ROLLBACK_NOT_REQUESTED",
                    DeploymentFailed(
                        f"Service {broken[0]} in broken state",
                        ["COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
                        ["USER_COMPONENT_ERROR"],
                    ),
                )
                return
            waiting = [
                f"{n} ({c.state if c else 'missing'})"
                for n, c in comps
                if c is None
                or c.pending is not None
                or c.next_spec is not None
                or c.state not in READY
                or now - c.changed_at < self.settings.deployment_stable
            ]
            waiting += [f"{n} (being removed)" for n in plan.remove if n in self.components]
            if not waiting:
                cutpoint("deployment.finishing")
                self._finish(rec, SUCCEEDED, "SUCCESSFUL")
                return
            if now > deadline:
                self._finish(
                    rec,
                    FAILED,
                    "FAILED_ROLLBACK_NOT_REQUESTED",
                    DeploymentFailed(
                        f"timed out after {self.settings.deployment_timeout:g} s waiting for "
                        + ", ".join(waiting),
                        ["COMPONENT_UPDATE_ERROR", "DEPLOYMENT_TIMEOUT"],
                        ["USER_COMPONENT_ERROR"],
                    ),
                )
                return
            yield False

    def _commit(self, plan: Plan) -> None:
        changes: list[Change] = [(["services", n], CHANGED, s.to_config()) for n, s in plan.services.items()]
        changes += [(["services", n], REMOVED, None) for n in plan.remove]
        changes.append((["services", "main", "dependencies"], CHANGED, plan.roots))
        self.config.commit(changes)

    def _apply(self, plan: Plan, resumed: bool) -> None:
        for name in plan.remove:
            comp = self.components.get(name)
            if comp is not None:
                comp.request_stop(removing=True)
        for name, spec in plan.services.items():
            comp = self.components.get(name)
            if comp is None:
                self.components[name] = Component(spec, self)
                continue
            comp.removing = False
            comp.goal = RUNNING
            if comp.state == BROKEN or not spec.runs_same_as(comp.next_spec or comp.spec):
                comp.request("reinstall", spec)  # a new deployment is also what clears BROKEN
            elif not resumed:
                comp.spec.configuration = spec.configuration  # nothing to rerun: new values only

    # -- the CLI socket ---------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self.server is not None
        try:
            conn, _ = self.server.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.setblocking(True)
            conn.settimeout(5.0)
            try:
                data = b""
                while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                try:
                    request = json.loads(data.decode("utf-8"))
                    response = self.handle(request if isinstance(request, dict) else {})
                except ValueError as exc:
                    response = {"error": f"malformed request: {exc}"}
                conn.sendall(json.dumps(response).encode() + b"\n")
            except OSError:
                pass

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "version": self.version}
        if op == "create":
            return self._create(req)
        if op == "status":
            rec = self.deployments.get(str(req.get("id", "")))
            if rec is None:
                return {"error": f"ResourceNotFoundError: no local deployment with id {req.get('id')}"}
            return {"deployment": rec.public()}
        if op == "cancel":
            return self._cancel(str(req.get("id", "")))
        if op == "list_deployments":
            return {
                "deployments": [
                    r.public() for r in sorted(self.deployments.values(), key=lambda r: r.created)
                ]
            }
        if op == "list_components":
            return {"components": self._component_details()}
        if op == "details":
            name = str(req.get("name", ""))
            for c in self._component_details():
                if c["componentName"] == name:
                    return {"component": c}
            return {"error": f"ResourceNotFoundError: component {name} is not on this core"}
        return {"error": f"unknown request {op!r}"}

    def _component_details(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, state in BUILTINS.items():
            cfg = {"runWithDefault": {"posixUser": "root"}} if name == NUCLEUS_NAME else None
            out.append(
                {"componentName": name, "version": self.version, "state": state, "configuration": cfg}
            )
        for name, comp in sorted(self.components.items()):
            out.append(
                {
                    "componentName": name,
                    "version": comp.spec.version,
                    "state": comp.state,
                    "configuration": comp.spec.configuration,
                }
            )
        return out

    def _create(self, req: dict[str, Any]) -> dict[str, Any]:
        merge = req.get("merge") or {}
        remove = req.get("remove") or []
        if not isinstance(merge, dict) or not all(isinstance(v, str) for v in merge.values()):
            return {"error": "--merge takes NAME=VERSION"}
        bad = [f"{n}={v}" for n, v in merge.items() if not is_version(v)]
        if bad:
            return {"error": f"--merge {', '.join(bad)}: the version must be MAJOR.MINOR.PATCH"}
        if not isinstance(remove, list):
            return {"error": "--remove takes component names"}
        update = req.get("configUpdate")
        if update is not None and not isinstance(update, dict):
            return {"error": "--update-config must be a JSON object"}
        if NUCLEUS_NAME in merge and (len(merge) > 1 or remove):
            return {"error": f"a core-software update merges {NUCLEUS_NAME} alone (no --merge, --remove)"}
        if not merge and not remove and not update:
            return {"error": "nothing to deploy: give --merge, --remove or --update-config"}
        for key in ("recipeDir", "artifactDir"):
            value = req.get(key)
            if value and not os.path.isdir(value):
                return {"error": f"--{key} {value}: no such directory"}
        request = {
            "recipeDir": req.get("recipeDir") or "",
            "artifactDir": req.get("artifactDir") or "",
            "merge": merge,
            "remove": [str(r) for r in remove],
            "configUpdate": update or {},
            "groupId": req.get("groupId") or "",
        }
        rec = DeploymentRecord.new(request)
        self.deployments[rec.id] = rec
        self._save(rec)
        self.queue.append(rec.id)
        self.log(
            "INFO",
            "deployment-queued",
            logger="com.aws.greengrass.deployment.DeploymentService",
            deploymentId=rec.id,
            merge=json.dumps(merge),
            remove=json.dumps(request["remove"]),
        )
        return {"deploymentId": rec.id, "status": QUEUED}


# -- running as a daemon ---------------------------------------------------------------------------
def _redirect_stdio(root: str) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    out = os.open(os.path.join(root, "logs", "nucleus.out"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(devnull)
    os.close(out)


def serve(root: str, settings: AgentSettings, ready_fd: int | None, *, kernel: bool = False) -> int:
    """Run the nucleus until stopped; the exit status is 0, or 100 when it restarts for an update.

    ``kernel``: launched by the loader, which owns ``run/nucleus.pid``; this process writes ``kernel.pid``.
    """
    pid_file = kernel_pid_path(root) if kernel else pid_path(root)
    try:
        release = load_release()
        if release["defect"] == "crash_on_start":
            raise RuntimeError(f"nucleus {release['version']}: crash_on_start (a defect of this release)")
        nucleus = Nucleus(root, settings)
        nucleus.boot()
        with open(pid_file + "+", "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(pid_file + "+", pid_file)
    except Exception as exc:
        traceback.print_exc()
        if ready_fd is not None:
            os.write(ready_fd, f"ERROR {exc}\n".encode())
            os.close(ready_fd)
        return 1
    if ready_fd is not None:
        os.write(ready_fd, f"READY {os.getpid()}\n".encode())
        os.close(ready_fd)
    try:
        nucleus.run()
    finally:
        try:
            os.unlink(pid_file)
        except FileNotFoundError:
            pass
    return nucleus.exit_code


def _ping(root: str) -> bool:
    """Whether the nucleus of ``root`` answers on its CLI socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2.0)
            conn.connect(socket_path(root))
            conn.sendall(b'{"op": "ping"}\n')
            return b'"ok": true' in conn.recv(4096)
    except OSError:
        return False


def start_daemon(root: str, settings: AgentSettings, timeout: float) -> int:
    """Start the loader of ``alts/current`` in the background; return once its nucleus serves the CLI
    socket (or it failed).

    Why an exec of ``<root>/alts/current/distro/bin/loader`` and not the loader code next to this module:
    a Greengrass V2 service starts the loader through ``alts/current``, so a core whose ``current`` is
    missing (a cut inside a non-atomic switch) or whose loader was deleted cannot start at all.
    """
    from .alts import LaunchDirs
    from .loader import service_loader

    existing = read_pid(root)
    if existing is not None:
        print(f"nucleus already running, pid {existing}")
        return 0
    launcher = service_loader(root)
    if not os.path.isfile(launcher):
        print(
            f"nucleus failed to start: no loader {launcher} (alts: {LaunchDirs(root).describe()}); the "
            "service starts the loader of the current launch directory",
            file=sys.stderr,
        )
        return 1
    argv = [sys.executable, "-S", launcher, "--root", root]
    for fault in settings.faults:
        argv += ["--fault", fault]
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    os.makedirs(os.path.join(root, "run"), exist_ok=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        _redirect_stdio(root)
        try:
            with open(pid_path(root) + "+", "w", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()}\n")
            os.replace(pid_path(root) + "+", pid_path(root))
            os.write(w, f"{os.getpid()}\n".encode())
            os.close(w)
            os.execv(argv[0], argv)  # same pid: the pid file names the loader
        except BaseException:
            traceback.print_exc()
            try:
                os.unlink(pid_path(root))
            except OSError:
                pass
        os._exit(127)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as fh:
        answer = fh.read().decode(errors="replace").strip()
    loader = int(answer) if answer.isdigit() else 0
    deadline = time.monotonic() + timeout
    while loader and time.monotonic() < deadline:
        if _ping(root):
            print(f"nucleus started, pid {loader}")
            return 0
        if not _running(loader):
            break
        time.sleep(0.1)
    detail = "the loader exited" if loader else "the loader did not start"
    if loader and time.monotonic() >= deadline:
        detail = f"no answer within {timeout:g} s"
    print(
        f"nucleus failed to start: {detail} (see {os.path.join(root, 'logs', 'loader.log')} and "
        f"{os.path.join(root, 'logs', 'nucleus.out')})",
        file=sys.stderr,
    )
    return 1


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (the loader is not our child: a zombie is reaped by init, not us)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
