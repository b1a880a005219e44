"""One component's lifecycle: the nucleus state machine, its step processes and their timeouts.

The rules are the nucleus's (``Lifecycle.java``), because scenarios check exactly these:

- NEW runs ``install`` (timeout 120 s) -> INSTALLED; INSTALLED waits until every dependency is RUNNING or
  FINISHED -> STARTING. ``startup`` keeps STARTING until it exits 0 (timeout 120 s) -> RUNNING; ``run``
  enters RUNNING at once and FINISHED when it exits 0; neither -> FINISHED.
- A failed or timed-out step reports ERRORED. Errors are counted per state they came from (NEW, STARTING,
  RUNNING); any other report from that state resets its count; the third in a row (within
  ``error_reset_time``) goes to BROKEN instead. ERRORED runs ``recover`` (60 s), then retries: from NEW it
  reinstalls, from STARTING/RUNNING it stops (``shutdown``, 15 s) and starts again.
- BROKEN stops everything and stays until a new deployment asks for a reinstall.
- When a component leaves RUNNING/FINISHED, components with a HARD dependency on it that are STARTING or
  RUNNING restart (a dependency update restarts its dependents).

Every step is ``sh -c <script>`` in its own process group, so a timeout or a stop ends the whole tree.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from .recipe import Step

if TYPE_CHECKING:
    from .daemon import Nucleus

NEW, INSTALLED, STARTING, RUNNING, STOPPING, FINISHED, ERRORED, BROKEN = (
    "NEW",
    "INSTALLED",
    "STARTING",
    "RUNNING",
    "STOPPING",
    "FINISHED",
    "ERRORED",
    "BROKEN",
)
STATES = (NEW, INSTALLED, STARTING, RUNNING, STOPPING, FINISHED, ERRORED, BROKEN)
READY = (RUNNING, FINISHED)
#: States whose errors count towards BROKEN (the nucleus's STATES_TO_ERRORED).
COUNTED = (NEW, STARTING, RUNNING)
MAX_CONTINUAL_ERRORS = 3
#: States in which a component has no process of its own left to stop.
AT_REST = (NEW, INSTALLED, FINISHED, BROKEN)


@dataclass
class ComponentSpec:
    """What a deployment asks to run; stored in the config as ``services.<name>``."""

    name: str
    version: str
    component_type: str = "aws.greengrass.generic"
    configuration: dict[str, Any] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)  # name -> HARD | SOFT
    lifecycle: dict[str, Step] = field(default_factory=dict)  # interpolated
    setenv: dict[str, str] = field(default_factory=dict)

    def to_config(self) -> dict[str, Any]:
        return {
            "componentType": self.component_type,
            "version": self.version,
            "configuration": self.configuration,
            "dependencies": dict(self.dependencies),
            "lifecycle": {k: v.to_json() for k, v in self.lifecycle.items()},
            "setenv": dict(self.setenv),
        }

    @classmethod
    def from_config(cls, name: str, data: dict[str, Any]) -> ComponentSpec:
        return cls(
            name=name,
            version=str(data.get("version", "0.0.0")),
            component_type=str(data.get("componentType", "aws.greengrass.generic")),
            configuration=dict(data.get("configuration") or {}),
            dependencies={str(k): str(v) for k, v in (data.get("dependencies") or {}).items()},
            lifecycle={str(k): Step.from_json(v) for k, v in (data.get("lifecycle") or {}).items()},
            setenv={str(k): str(v) for k, v in (data.get("setenv") or {}).items()},
        )

    def runs_same_as(self, other: ComponentSpec) -> bool:
        """Whether a change from ``other`` needs no reinstall (same version, scripts, env, dependencies)."""
        return (
            self.version == other.version
            and self.to_config()["lifecycle"] == other.to_config()["lifecycle"]
            and self.setenv == other.setenv
            and self.dependencies == other.dependencies
        )


# -- processes ------------------------------------------------------------------------------------
def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group ``pgid``.

    Zombies do not count: orphans are reaped by the target's init only every half second, and a dead
    process must not hold up a stop.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 2 and rest[2] == str(pgid) and rest[0] not in ("Z", "X"):
            return True
    return False


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class StepProcess:
    """A running lifecycle step: ``sh -c script`` as the leader of its own process group."""

    def __init__(
        self,
        component: str,
        step: str,
        script: str,
        *,
        cwd: str,
        env: dict[str, str],
        timeout: float | None,
        on_line: Callable[[StepProcess, str, str], None],
        on_eof: Callable[[IO[bytes]], None],
    ) -> None:
        self.component = component
        self.step = step
        self.on_line = on_line
        self.on_eof = on_eof
        self.started = time.monotonic()
        self.deadline = self.started + timeout if timeout else None
        self.timeout = timeout
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pgid = self.proc.pid
        self.streams: dict[str, IO[bytes]] = {}
        self._partial: dict[str, bytes] = {}
        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            if stream is not None:
                fl = fcntl.fcntl(stream.fileno(), fcntl.F_GETFL)
                fcntl.fcntl(stream.fileno(), fcntl.F_SETFL, fl | os.O_NONBLOCK)
                self.streams[name] = stream
                self._partial[name] = b""

    @property
    def script_name(self) -> str:
        return f"services.{self.component}.lifecycle.{self.step.capitalize()}"

    def poll(self) -> int | None:
        return self.proc.poll()

    def read(self, stream: str) -> bool:
        """Read what ``stream`` has; False once it is at EOF (the caller stops watching it)."""
        fh = self.streams.get(stream)
        if fh is None:
            return False
        while True:
            try:
                chunk = os.read(fh.fileno(), 65536)
            except BlockingIOError:
                return True
            except OSError:
                chunk = b""
            if not chunk:
                rest = self._partial.pop(stream, b"")
                if rest:
                    self.on_line(self, stream, rest.decode("utf-8", "replace"))
                self.on_eof(fh)  # the owner stops watching it before it is closed
                fh.close()
                del self.streams[stream]
                return False
            data = self._partial.get(stream, b"") + chunk
            *lines, self._partial[stream] = data.split(b"\n")
            for raw in lines:
                self.on_line(self, stream, raw.decode("utf-8", "replace").rstrip("\r"))

    def drain(self) -> None:
        """Log everything already written, so output appears before the state change it caused."""
        for name in list(self.streams):
            self.read(name)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        signal_group(self.pgid, sig)


class Termination:
    """Stop process groups: SIGTERM now, SIGKILL after the grace period; done when none is left."""

    def __init__(self, pgids: list[int], procs: list[subprocess.Popen[bytes]], grace: float) -> None:
        self.pgids = list(dict.fromkeys(pgids))
        self.procs = procs
        self.kill_at = time.monotonic() + grace
        self.killed = False
        for g in self.pgids:
            signal_group(g, signal.SIGTERM)

    def done(self) -> bool:
        for p in self.procs:
            p.poll()
        self.pgids = [g for g in self.pgids if group_alive(g)]
        if not self.pgids:
            return True
        now = time.monotonic()
        if not self.killed and now >= self.kill_at:
            for g in self.pgids:
                signal_group(g, signal.SIGKILL)
            self.killed = True
        return self.killed and now >= self.kill_at + 10.0  # give up on unkillable (D state) processes


# -- the state machine ----------------------------------------------------------------------------
class Component:
    """One component as the nucleus runs it."""

    def __init__(self, spec: ComponentSpec, nucleus: Nucleus) -> None:
        self.spec = spec
        self.nucleus = nucleus
        self.state = NEW
        self.prev_state = NEW
        self.status_code = "NONE"
        self.status_reason = ""
        self.changed_at = time.monotonic()
        #: RUNNING: keep it running; FINISHED: stop it and let it rest (removal, nucleus shutdown).
        self.goal = RUNNING
        #: A pending request from a deployment or a dependency: "restart" or "reinstall".
        self.pending: str | None = None
        #: The spec a reinstall switches to (the old one keeps running until then).
        self.next_spec: ComponentSpec | None = None
        self.after_stop = FINISHED
        self.step: StepProcess | None = None
        self.groups: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.termination: Termination | None = None
        self.recovered = False
        self.errors: dict[str, list[float]] = {}
        self.removing = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def settled(self) -> bool:
        """Nothing of this component runs any more (for removal and nucleus shutdown)."""
        return self.state in AT_REST and self.step is None and self.termination is None

    # -- requests ---------------------------------------------------------------------------------
    def request(self, what: str, spec: ComponentSpec | None = None) -> None:
        """A deployment asks for ``restart`` or ``reinstall`` (with the new spec); this clears BROKEN."""
        if spec is not None:
            self.next_spec = spec
        if what == "reinstall" or self.pending is None:
            self.pending = what
        if self.state == BROKEN:
            self.errors.clear()
        self.goal = RUNNING

    def request_stop(self, removing: bool = False) -> None:
        self.goal = FINISHED
        self.removing = self.removing or removing

    # -- transitions ------------------------------------------------------------------------------
    def set_state(self, new: str, code: str = "NONE", reason: str = "") -> bool:
        old = self.state
        if new == old:
            return False
        settings = self.nucleus.settings
        now = time.monotonic()
        if new == ERRORED and old in COUNTED:
            times = self.errors.setdefault(old, [])
            if times and now - times[-1] >= settings.error_reset_time:
                times.clear()
            times.append(now)
            if len(times) >= MAX_CONTINUAL_ERRORS and not settings.has("broken_rule_off"):
                new = BROKEN
        elif new != ERRORED:
            self.errors.pop(old, None)  # any other report from ``old`` ends its run of errors
        self.prev_state, self.state, self.changed_at = old, new, now
        self.status_code, self.status_reason = code, reason
        self.nucleus.log_state(self, old, new, code, reason)
        if old in READY and new not in READY:
            self.nucleus.dependency_left_ready(self)
        self._enter(new)
        return True

    def _enter(self, state: str) -> None:
        if state == STARTING:
            self._start()
        elif state == STOPPING:
            self._begin_stop()
        elif state == ERRORED:
            self.recovered = False
        elif state == BROKEN:
            self._terminate_all()
        elif state in (NEW, INSTALLED) and self.groups:
            self._terminate_all()  # leftovers of a finished run must not outlive a restart

    def errored(self, code: str, reason: str) -> bool:
        self.nucleus.log_error(self, code, reason)
        return self.set_state(ERRORED, code, reason)

    # -- steps ------------------------------------------------------------------------------------
    def _timeout(self, step: str, lifecycle: Step) -> float | None:
        if self.nucleus.settings.has("timeouts_ignored"):
            return None
        if lifecycle.timeout is not None:
            return lifecycle.timeout
        s = self.nucleus.settings
        return {
            "install": s.install_timeout,
            "startup": s.startup_timeout,
            "shutdown": s.shutdown_timeout,
            "recover": s.recover_timeout,
        }.get(step)

    def _spawn(self, step: str, keep_group: bool) -> StepProcess | None:
        """Start a lifecycle step; None when the recipe has none or its ``Skipif`` holds."""
        lifecycle = self.spec.lifecycle.get(step)
        if lifecycle is None or _skip(lifecycle.skipif):
            return None
        proc = self.nucleus.spawn(self, step, lifecycle, self._timeout(step, lifecycle))
        if keep_group:
            self.groups.append(proc.pgid)
            self.procs.append(proc.proc)
        return proc

    def _step_result(self) -> tuple[str, int]:
        """("running", 0), ("timeout", 0) or ("exited", status) for the current step."""
        step = self.step
        assert step is not None
        rc = step.poll()
        if rc is None:
            if step.deadline is not None and time.monotonic() >= step.deadline:
                step.kill(signal.SIGKILL)
                step.proc.wait()
                step.drain()
                self.step = None
                return "timeout", 0
            return "running", 0
        step.drain()
        self.step = None
        return "exited", rc

    def _start(self) -> None:
        """Entering STARTING: ``startup`` (stay STARTING), ``run`` (RUNNING at once) or neither (FINISHED)."""
        self.step = self._spawn("startup", keep_group=True)
        if self.step is not None:
            return
        self.step = self._spawn("run", keep_group=True)
        self.set_state(RUNNING if self.step is not None else FINISHED)

    def _begin_stop(self) -> None:
        self.step = None
        self.termination = None
        self.step = self._spawn("shutdown", keep_group=False)
        if self.step is None:
            self._terminate_all()

    def _terminate_all(self) -> None:
        if self.step is not None and self.step.pgid not in self.groups:
            self.groups.append(self.step.pgid)
            self.procs.append(self.step.proc)
        self.step = None
        self.termination = Termination(self.groups, self.procs, self.nucleus.settings.kill_grace)
        self.groups, self.procs = [], []

    def _stop_target(self) -> str:
        if self.goal != RUNNING:
            return FINISHED
        return NEW if self.pending == "reinstall" else INSTALLED

    # -- one tick -------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Advance the state machine as far as it can go now; True when something changed."""
        if self.termination is not None and self.state != STOPPING and self.termination.done():
            self.termination = None
        handler = {
            NEW: self._tick_new,
            INSTALLED: self._tick_installed,
            STARTING: self._tick_starting,
            RUNNING: self._tick_running,
            STOPPING: self._tick_stopping,
            FINISHED: self._tick_finished,
            ERRORED: self._tick_errored,
            BROKEN: self._tick_broken,
        }[self.state]
        return handler()

    def _tick_new(self) -> bool:
        if self.step is not None:
            if self.goal != RUNNING:  # stopped while installing (removal): end the install, rest
                self.step.kill(signal.SIGKILL)
                self.step.proc.wait()
                self.step = None
                return self.set_state(FINISHED)
            outcome, rc = self._step_result()
            if outcome == "running":
                return False
            if outcome == "timeout":
                return self.errored("INSTALL_TIMEOUT", "Timeout in install")
            if rc != 0:
                return self.errored("INSTALL_ERRORED", f"Install script exited with code {rc}")
            return self.set_state(INSTALLED)
        if self.goal != RUNNING or self.termination is not None:
            return False
        if self.next_spec is not None:
            self.spec, self.next_spec = self.next_spec, None
        if self.pending == "reinstall":
            self.pending = None
        self.nucleus.prepare_work_dir(self)
        self.step = self._spawn("install", keep_group=False)
        if self.step is None:
            return self.set_state(INSTALLED)
        return True

    def _tick_installed(self) -> bool:
        if self.goal != RUNNING:
            return self.set_state(FINISHED)
        if self.pending == "reinstall":
            return self.set_state(NEW)
        if self.pending == "restart":
            self.pending = None
        if self.termination is not None or not self.nucleus.dependencies_ready(self):
            return False
        return self.set_state(STARTING)

    def _tick_starting(self) -> bool:
        if self.goal != RUNNING or self.pending is not None:
            self.after_stop = self._stop_target()
            return self.set_state(STOPPING)
        if self.step is None:
            return False
        outcome, rc = self._step_result()
        if outcome == "running":
            return False
        if outcome == "timeout":
            return self.errored("STARTUP_TIMEOUT", "startup timeout")
        if rc != 0:
            return self.errored("STARTUP_ERRORED", f"Startup script exited with code {rc}")
        return self.set_state(RUNNING)

    def _tick_running(self) -> bool:
        if self.goal != RUNNING or self.pending is not None:
            self.after_stop = self._stop_target()
            return self.set_state(STOPPING)
        if self.step is None:
            return False  # a startup-style component: its background processes run unwatched
        outcome, rc = self._step_result()
        if outcome == "running":
            return False
        if rc != 0:
            return self.errored("RUN_ERRORED", f"Run script exited with code {rc}")
        return self.set_state(FINISHED)

    def _tick_stopping(self) -> bool:
        if self.step is not None:
            outcome, rc = self._step_result()
            if outcome == "running":
                return False
            if outcome == "timeout":
                self.nucleus.log_error(self, "SHUTDOWN_TIMEOUT", "Timeout in shutdown")
            elif rc != 0:
                self.nucleus.log_error(self, "SHUTDOWN_ERRORED", f"Shutdown script exited with code {rc}")
            self._terminate_all()
            return True
        if self.termination is None:
            self._terminate_all()
        assert self.termination is not None
        if not self.termination.done():
            return False
        self.termination = None
        target = self.after_stop
        if target == INSTALLED and self.goal != RUNNING:
            target = FINISHED
        return self.set_state(target)

    def _tick_finished(self) -> bool:
        if self.goal != RUNNING:
            if self.groups:  # what a finished run left behind stops with the component
                self._terminate_all()
                return True
            return False
        if self.pending == "reinstall":
            return self.set_state(NEW)
        if self.pending == "restart":
            return self.set_state(INSTALLED)
        return False

    def _tick_errored(self) -> bool:
        if self.step is not None:
            outcome, _ = self._step_result()
            if outcome == "running":
                return False
            if outcome == "timeout":
                self.nucleus.log_error(self, "RECOVER_TIMEOUT", "Timeout in recover")
        elif not self.recovered:
            self.recovered = True
            self.step = self._spawn("recover", keep_group=False)
            if self.step is not None:
                return True
        prev = self.prev_state
        if prev in (STARTING, RUNNING):
            self.after_stop = self._stop_target()
            return self.set_state(STOPPING)
        if prev == NEW:
            return self.set_state(NEW if self.goal == RUNNING else FINISHED)
        return self.set_state(self.after_stop if prev == STOPPING else FINISHED)

    def _tick_broken(self) -> bool:
        if self.goal == RUNNING and self.pending == "reinstall" and self.termination is None:
            self.errors.clear()
            return self.set_state(NEW)
        return False


def _skip(skipif: str) -> bool:
    """``Skipif: onpath <exe>`` / ``exists <file>``: the step is skipped when the condition holds."""
    if not skipif:
        return False
    kind, _, what = skipif.partition(" ")
    what = what.strip()
    if kind == "onpath":
        return shutil.which(what) is not None
    if kind == "exists":
        return os.path.exists(what)
    return False
