"""Update-and-cut campaigns: cut the core during an update, restart it, check the invariants.

Why this shape: it is what the best update systems test (scenarios.md power_loss): repeat update-and-cut
at a random time in [0, 1.1 x the measured update duration] (the seed is printed, so any cut can be
replayed), plus named cut points where the agent freezes (``GG_CUTPOINT``, device/cutpoints.py), cuts
after the Nth write to a file (the layer freezes there), and a second cut while the core recovers.

Fault models: ``crash`` (the target's power cut: every process dies, the disk keeps every write) and
``power-loss`` (the same cut with the write-back cache layer under the core's root, so what was not
flushed is lost; by default with an ext4-like journal committing metadata every second and on fsync).
A target whose own power cut already loses unflushed data says so with its ``fault_model`` attribute
(``vm-kill`` on a qemu-system board: QEMU is killed, the guest kernel's page cache is gone for real);
there ``power-loss`` *is* that cut, no layer is mounted, and the raw disk is fsck'd before the next boot:
each cut records the fsck result. Which model a cut used is in every cut's line and record.

Workloads: ``component`` (a component alternates between two versions), ``nucleus`` (the core software
alternates between 2.0.0 and 2.1.0: launch-directory switch, bootstrap, activation) and ``rollback`` (a
core version that cannot start: the loader's three tries and rollback).

After every restart the invariants of scenarios.md are checked; each cut is recorded with where it was,
the seed, the model, the invariants checked and the ones it broke.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.core.nucleus import core_versions
from harness.core.nucleus.cli_adapter import TERMINAL, DeploymentInfo, parse_deployments
from harness.core.nucleus.device.settings import AgentSettings
from harness.core.nucleus.driver import NucleusDriver
from harness.errors import InputError, TargetError
from harness.paths import FIXTURES_DIR
from harness.powerloss.cuts import CUT_OPS, WriteCut
from harness.powerloss.layer import PowerLossLayer
from harness.targets.base import Target
from harness.targets.qemu_user import QemuUserTarget

#: ``vm-kill`` is the power-loss model of a target whose own cut loses the page cache (see
#: ``target_fault_model``); asking such a target for ``power-loss`` runs ``vm-kill``.
VM_KILL = "vm-kill"
MODELS = ("crash", "power-loss", VM_KILL)
#: The models that need nothing from the target but a power cut (the layer supplies the data loss).
LAYER_MODELS = ("crash", "power-loss")
THING = "powerloss-core"
CUT_MARKER = "/tmp/gg-cutpoint"
#: On a target whose own cut is the fault model the marker lives in RAM (/run is a tmpfs on a systemd
#: board): the agent fsyncs it, and an fsync on the disk under test would commit the guest's journal at
#: the cut point, persisting what a real board would lose.
RAM_CUT_MARKER = "/run/gg-cutpoint"
#: A cut point of the harness, not of the agent: the cut comes as soon as ``deployment create`` returned.
#: What the core acknowledged must already be on its disk (the reference core fsyncs the record first).
ACK_POINT = "deployment.acknowledged"
#: How long an interrupted deployment may take to reach a terminal state after the restart.
RESUME_TIMEOUT_S = 120.0
#: How long the core may take to answer its CLI after a restart before it counts as a boot loop.
START_TIMEOUT_S = 60.0
#: How long a running core may deny knowing an acknowledged deployment before it counts as lost.
UNKNOWN_GRACE_S = 15.0
#: How long a named cut point or write cut may take to be reached.
HIT_TIMEOUT_S = 60.0
#: ext4 commits its journal every 5 s by default (``commit=``); 1 s explores more states per update.
JOURNAL_COMMIT_S = 1.0
INVARIANTS = (
    "starts (no boot loop)",
    "config is the last committed state (thing name, root path never empty)",
    "running version is old or new",
    "interrupted deployment resumes or ends terminal",
    "exactly one terminal status",
    "QoS 1 messages acknowledged survive (where persistence is claimed)",
)
QOS1_NOT_CLAIMED = INVARIANTS[5] + ": n/a, the reference core's broker runs with persistence false"
#: Checked after every cut whose target fscks its disk before the next boot (e2fsck exit >= 4: not repaired).
FSCK_INVARIANT = "root file system repairable after the cut (e2fsck -fy exit < 4)"
E2FSCK_UNCORRECTED = 4
#: Whole emulated machines (TCG) start the core and answer commands several times slower than a chroot.
OWN_CUT_TIMEOUT_SCALE = 3.0


class FsckRecord(Protocol):
    """What a target with a real disk records after a cut (harness.targets.qemu_system.FsckResult)."""

    repair_exit: int

    @property
    def clean(self) -> bool: ...

    def summary(self) -> str: ...


def target_fault_model(target: Target) -> str:
    """The fault model of the target's own power cut when it is more than a crash, else "".

    Asked of the target, not of a board list: a qemu-system target sets ``fault_model = "vm-kill"``
    (its cut kills QEMU, so the guest's page cache is lost as with a pulled plug); a chroot's cut only
    kills processes, so power loss needs the write-back cache layer there.
    """
    return str(getattr(target, "fault_model", "") or "")


def models_for(target: Target) -> tuple[str, ...]:
    """The fault models a campaign can run on ``target``."""
    own = target_fault_model(target)
    return (own,) if own else LAYER_MODELS


def unsupported_reason(target: Target) -> str:
    """Why no campaign can run on ``target`` ("" when one can): it needs a target whose own cut is a
    fault model (``fault_model``) or one that hosts the write-back cache layer (qemu-user)."""
    if target_fault_model(target) or isinstance(target, QemuUserTarget):
        return ""
    return (
        f"{target.name}: power-loss campaigns need a target whose power cut is a fault model of its own "
        "(qemu-system: vm-kill) or one that hosts the power-loss layer (qemu-user)"
    )


def resolve_model(target: Target, model: str) -> str:
    """The model a campaign runs when ``model`` is asked: ``power-loss`` on a target whose own cut loses
    unflushed data is that cut (``vm-kill``); a model the target cannot give is a clear input error."""
    if model not in MODELS:
        raise InputError(f"power-loss model {model!r}: allowed values {', '.join(MODELS)}")
    own = target_fault_model(target)
    if own and model in ("power-loss", own):
        return own
    if model not in models_for(target):
        allowed = ", ".join(models_for(target)) + (" (or power-loss)" if own else "")
        why = (
            f"its power cut is {own}: the page cache is lost at every cut, no cut keeps unflushed writes"
            if own
            else "its power cut keeps the disk's view; power loss comes from the write-back cache layer"
        )
        raise InputError(
            f"{target.name}: fault model {model!r} is not available ({why}); allowed values {allowed}"
        )
    return model


@dataclass(frozen=True)
class Workload:
    """What is updated: a component or the core software, and between which versions."""

    name: str
    component: str
    versions: tuple[str, str]
    #: the update always goes to versions[1] (a bad version) instead of alternating
    one_way: bool = False
    #: named cut points this workload passes through
    points: tuple[str, ...] = ()

    @property
    def is_nucleus(self) -> bool:
        return self.component == core_versions.NUCLEUS


RECIPES = FIXTURES_DIR / "components" / "recipes"
ARTIFACTS = FIXTURES_DIR / "components" / "artifacts"
WORKLOADS = {
    "component": Workload(
        "component",
        "com.example.HelloWorld",
        ("1.0.0", "1.1.0"),
        points=(
            ACK_POINT,
            "config.tlog.append",
            "meta.between_renames",
            "deployment.planned",
            "deployment.committed",
            "deployment.applied",
            "deployment.finishing",
        ),
    ),
    "nucleus": Workload(
        "nucleus",
        core_versions.NUCLEUS,
        ("2.0.0", "2.1.0"),
        points=(
            "deployment.nucleus_components_stopped",
            "deployment.nucleus_persisted",
            "launch.unpacked",
            "launch.new_linked",
            "bootstrap",
            "launch.old_linked",
            "launch.link_removed",
            "launch.current_linked",
            "launch.new_removed",
            "activation.before_status",
        ),
    ),
    "rollback": Workload(
        "rollback",
        core_versions.NUCLEUS,
        ("2.0.0", "2.2.0"),
        one_way=True,
        points=(
            "rollback.broken_linked",
            "rollback.current_linked",
            "rollback.old_removed",
            "rollback.panic_marked",
        ),
    ),
}
#: Files whose Nth write a campaign may cut after (relative to the core's root).
WRITE_CUT_FILES = ("config/config.tlog",)


@dataclass
class Cut:
    """One cut: where (a named point, a write or a time), the seed, the fault model, what was checked."""

    index: int
    model: str
    seed: int
    workload: str
    point: str = ""
    at_s: float | None = None
    second_at_s: float | None = None
    hit: str = ""
    deployment: str = ""
    old: str = ""
    new: str = ""
    checked: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    #: the fsck result of each boot after this cut (targets that check their disk; else empty)
    fsck: list[str] = field(default_factory=list)
    #: how many of those checks found the file system not clean (before repairing it)
    fsck_not_clean: int = 0

    def where(self) -> str:
        if self.point:
            text = f"point {self.point}" + (f" (hit {self.hit})" if self.hit else " (not reached)")
        else:
            text = f"t={self.at_s:.3f}s" if self.at_s is not None else "none"
        if self.second_at_s is not None:
            text += f", second cut during recovery at t={self.second_at_s:.3f}s"
        return text

    def line(self) -> str:
        verdict = "OK" if not self.broken else "BROKEN: " + "; ".join(self.broken)
        fsck = f" [{'; '.join(self.fsck)}]" if self.fsck else ""
        return (
            f"cut {self.index} [{self.workload} {self.old}->{self.new}, {self.model}, seed {self.seed}] "
            f"{self.where()}: {verdict}{fsck}"
        )


@dataclass
class CampaignResult:
    seed: int
    model: str
    workload: str
    update_s: float
    cuts: list[Cut]

    @property
    def broken(self) -> list[Cut]:
        return [c for c in self.cuts if c.broken]

    @property
    def invariants(self) -> list[str]:
        return [*INVARIANTS, FSCK_INVARIANT] if self.model == VM_KILL else list(INVARIANTS)

    def report(self) -> str:
        head = (
            f"power-loss campaign: workload {self.workload}, model {self.model}, seed {self.seed} "
            f"(replay with this seed), update {self.update_s:.2f} s, {len(self.cuts)} cuts; invariants "
            "checked after each restart: " + "; ".join(self.invariants)
        )
        return "\n".join([head, *(c.line() for c in self.cuts)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "model": self.model,
            "workload": self.workload,
            "update_s": self.update_s,
            "invariants": self.invariants,
            "cuts": [asdict(c) for c in self.cuts],
        }


def _first_lines(exc: BaseException, n: int = 3) -> str:
    """The gist of an error for a one-line cut record: no command echo, no stream headers."""
    lines = [
        line.strip()
        for line in str(exc).splitlines()
        if line.strip() and not line.startswith("$ ") and line.strip() not in ("[stderr]", "[stdout]")
    ]
    return " | ".join(lines[:n])[:400]


class Campaign:
    """A reference nucleus on its own target, updated and cut again and again."""

    def __init__(
        self,
        target: Target,
        *,
        workload: str = "component",
        model: str = "power-loss",
        faults: tuple[str, ...] = (),
        seed: int | None = None,
        root: str = "/greengrass",
        journal_commit_s: float | None = JOURNAL_COMMIT_S,
    ) -> None:
        if workload not in WORKLOADS:
            raise InputError(f"power-loss workload {workload!r}: allowed values {', '.join(WORKLOADS)}")
        self.target = target
        self.work = WORKLOADS[workload]
        self.model = resolve_model(target, model)
        #: the target's own cut is the fault model (vm-kill): no layer, a disk check after every cut
        self.own_cut = self.model == target_fault_model(target)
        scale = OWN_CUT_TIMEOUT_SCALE if self.own_cut else 1.0
        self.start_timeout = START_TIMEOUT_S * scale
        self.resume_timeout = RESUME_TIMEOUT_S * scale
        self.hit_timeout = HIT_TIMEOUT_S * scale
        self.unknown_grace = UNKNOWN_GRACE_S * scale
        self.seed = seed if seed is not None else random.randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.root = root
        settings = AgentSettings(thing_name=THING, deployment_stable=0.5, compact_after=8)
        self.driver = NucleusDriver.reference(target, root, faults=faults, settings=settings)
        self.layer = (
            PowerLossLayer(self._layer_target(), root, commit_s=journal_commit_s)
            if self.model == "power-loss"
            else None
        )
        self._op_layer: PowerLossLayer | None = None
        self._fsck_seen = len(self._fsck_results())
        self.marker = RAM_CUT_MARKER if self.own_cut else CUT_MARKER
        #: the last cut broke the core: the next cut starts from a fresh install (none after the last)
        self._reinstall_due = False
        self.version = ""
        self.update_s = 0.0
        self.cuts: list[Cut] = []
        #: called with every cut once it is checked (a long campaign shows progress)
        self.on_cut: Callable[[Cut], None] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="gg-powerloss-")
        self._packages: dict[str, tuple[Path, Path]] = {}

    def _layer_target(self) -> QemuUserTarget:
        """The layer is mounted into a qemu-user target's namespace; other targets cannot host it."""
        if not isinstance(self.target, QemuUserTarget):
            raise InputError(
                f"{self.target.name}: the power-loss layer (model power-loss, operation cuts) needs a "
                f"qemu-user target; allowed models here: {', '.join(models_for(self.target))}"
            )
        return self.target

    # -- power --------------------------------------------------------------------------------------
    def _power_on(self, write_cut: WriteCut | None = None) -> None:
        self.target.power_on()
        self.target.run(["rm", "-f", self.marker], timeout=30)
        if self.layer is not None:
            self.layer.write_cut = write_cut
            self.layer.mount()
        elif write_cut is not None:  # crash model: a write-through layer only counts and freezes
            self._op_layer = PowerLossLayer(
                self._layer_target(), self.root, write_cut=write_cut, write_through=True
            )
            self._op_layer.mount()

    @property
    def _counting_layer(self) -> PowerLossLayer | None:
        return self.layer if self.layer is not None else self._op_layer

    def _cut(self) -> None:
        self.target.power_cut()
        for layer in (self.layer, self._op_layer):
            if layer is not None:
                layer.reap()
        self._op_layer = None

    def _fsck_results(self) -> list[FsckRecord]:
        results = getattr(self.target, "fsck_results", None)
        return list(results) if isinstance(results, list) else []

    def _new_fsck(self) -> list[FsckRecord]:
        """The disk checks the target ran at its power-ons since the last call (after a cut)."""
        results = self._fsck_results()
        new, self._fsck_seen = results[self._fsck_seen :], len(results)
        return new

    def _record_fsck(self, cut: Cut) -> None:
        for result in self._new_fsck():
            cut.fsck.append(result.summary())
            cut.fsck_not_clean += not result.clean
            if result.repair_exit >= E2FSCK_UNCORRECTED:
                cut.broken.append(f"{FSCK_INVARIANT}: {result.summary()}")

    # -- updates ------------------------------------------------------------------------------------
    def _package(self, version: str) -> tuple[Path, Path]:
        if not self.work.is_nucleus:
            return RECIPES, ARTIFACTS
        if version not in self._packages:
            pkg = core_versions.package(version, Path(self._tmp.name) / version)
            self._packages[version] = (pkg.recipe_dir, pkg.artifact_dir)
        return self._packages[version]

    def _deploy(self, version: str) -> str:
        recipes, artifacts = self._package(version)
        update = {self.work.component: {"MERGE": {"allowDowngrade": True}}} if self.work.is_nucleus else None
        return self.driver.deploy(
            recipes, artifacts, merge={self.work.component: version}, update_config=update
        )

    def _running_version(self) -> str:
        info = self.driver.component_details().get(self.work.component)
        return info.version if info else "absent"

    def _wait(self, dep: str, timeout: float) -> DeploymentInfo:
        """``deployment status`` until terminal, through restarts of the core (a CLI that does not answer)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        unknown_since: float | None = None
        while time.monotonic() < deadline:
            try:
                info = self.driver.deployment(dep)
                unknown_since = None
                if info.terminal:
                    return info
            except TargetError as exc:
                last = exc
                if self.driver.is_running():  # the core answers but does not know it: lost
                    unknown_since = unknown_since or time.monotonic()
                    if time.monotonic() - unknown_since > self.unknown_grace:
                        raise TargetError(
                            f"deployment {dep} unknown to the running core: {_first_lines(exc)}"
                        ) from None
            time.sleep(0.25)
        detail = f"; last error: {_first_lines(last)}" if last else ""
        raise TargetError(f"deployment {dep} not terminal after {timeout:g} s{detail}")

    def _next_versions(self) -> tuple[str, str]:
        a, b = self.work.versions
        if self.work.one_way:
            return self.version, b
        return self.version, (b if self.version == a else a)

    # -- setup --------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Install on the disk, then measure one update without a cut (the time base of random cuts)."""
        self.target.power_on()
        self._new_fsck()  # a check after a cut that is not a campaign cut (reinstall) belongs to none
        self.target.run(["rm", "-rf", self.root], timeout=60)
        self.driver.install()
        if self.own_cut:  # no layer to mount: the install only has to reach the disk (VMs boot slowly)
            self.target.run(["sync"], timeout=120, check=True)
            self.target.run(["rm", "-f", self.marker], timeout=30)
        else:
            self.target.power_off()
            self._power_on()
        self.driver.start(timeout=self.start_timeout)
        if not self.work.is_nucleus:
            self._wait(self._deploy(self.work.versions[0]), self.resume_timeout)
        self.version = self._running_version()
        old, new = self._next_versions()
        began = time.monotonic()
        info = self._wait(self._deploy(new), self.resume_timeout)
        if not self.update_s:
            self.update_s = time.monotonic() - began
        self.driver.start(timeout=self.start_timeout)
        self.version = self._running_version()
        expected = old if self.work.one_way else new
        if self.version != expected:
            raise TargetError(
                f"setup: updating {self.work.component} {old} -> {new} without a cut ended {info.status} "
                f"running {self.version}, not {expected}"
            )

    def reinstall(self) -> None:
        """After a cut that broke the core: a fresh install, so the campaign goes on from a good state."""
        self._cut()
        self.setup()

    # -- one cut ------------------------------------------------------------------------------------
    def cut_once(self, point: str = "", *, second: bool = False) -> Cut:
        """Update and cut (at ``point``: a cut point name or ``write:<file>@N``; else a random time),
        power on (optionally cut again while the core recovers), restart, check the invariants.

        A cut that broke an invariant is followed by a fresh install before the next cut, so one broken
        core does not make every later cut fail (and the last cut costs no reinstall)."""
        if self._reinstall_due:
            self._reinstall_due = False
            self.reinstall()
        old, new = self._next_versions()
        cut = Cut(len(self.cuts), self.model, self.seed, self.work.name, point=point, old=old, new=new)
        try:
            self._cut_and_check(cut, point, second)
        except TargetError as exc:
            cut.broken.append(f"{INVARIANTS[0]}: {_first_lines(exc)}")
            self._record_fsck(cut)  # a board that did not boot again: what its disk check said
        self.cuts.append(cut)
        if self.on_cut is not None:
            self.on_cut(cut)
        self._reinstall_due = bool(cut.broken)
        return cut

    def _cut_and_check(self, cut: Cut, point: str, second: bool) -> None:
        new = cut.new
        if point.partition(":")[0] in CUT_OPS:
            try:
                op_cut = WriteCut.parse(point)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            if self.own_cut:
                raise InputError(
                    f"cut {point!r}: operation cuts need the power-loss layer, which model {self.model} on "
                    f"{self.target.name} does not use; use named points or random times"
                )
            self.driver.stop()
            self._cut()
            self._power_on(op_cut)
            self._new_fsck()  # the harness's own cut to mount the counting layer, not the campaign's
            self.driver.start(timeout=self.start_timeout)
        elif point and point != ACK_POINT:
            self.driver.stop()
            self.driver.start(
                timeout=self.start_timeout, env={"GG_CUTPOINT": point, "GG_CUTPOINT_MARKER": self.marker}
            )
        else:
            cut.at_s = self.rng.uniform(0.0, 1.1 * self.update_s)
        began = time.monotonic()
        try:
            cut.deployment = self._deploy(new)
        except TargetError:
            cut.deployment = ""  # the core froze before it acknowledged the request
        if point == ACK_POINT:
            cut.hit = f"{ACK_POINT}@1" if cut.deployment else ""
        elif point:
            cut.hit = self._wait_hit(point, cut.deployment)
        else:
            assert cut.at_s is not None
            time.sleep(max(0.0, cut.at_s - (time.monotonic() - began)))
        self._cut()
        self._power_on()
        self._record_fsck(cut)
        if second:
            cut.second_at_s = self.rng.uniform(0.0, 1.1 * self.update_s)
            recovering = time.monotonic()
            try:
                self.driver.start(timeout=self.start_timeout)
            except TargetError:
                pass  # judged after the next restart
            time.sleep(max(0.0, cut.second_at_s - (time.monotonic() - recovering)))
            self._cut()
            self._power_on()
            self._record_fsck(cut)
        if self.own_cut:
            cut.checked.append(FSCK_INVARIANT)
            if not cut.fsck:
                cut.broken.append(f"{FSCK_INVARIANT}: no fsck result recorded after the cut")
        self.check(cut)

    def _wait_hit(self, point: str, deployment: str) -> str:
        """The cut point's marker once reached; "" when the update ended (or stalled) without reaching it."""
        deadline = time.monotonic() + self.hit_timeout
        checked = time.monotonic()
        while time.monotonic() < deadline:
            if deployment and time.monotonic() - checked > 2.0:
                checked = time.monotonic()
                try:
                    if self.driver.deployment(deployment).terminal:
                        deadline = min(deadline, time.monotonic() + 1.0)
                except TargetError:
                    pass
            if point.partition(":")[0] in CUT_OPS:
                layer = self._counting_layer
                hit = layer.cut_hit() if layer is not None else None
            else:
                hit = (self.target.read_text(self.marker) or "").strip() or None
            if hit:
                return hit
            time.sleep(0.05)
        return ""

    # -- invariants ---------------------------------------------------------------------------------
    def check(self, cut: Cut) -> None:
        """The invariants of scenarios.md power_loss after a restart, recorded on ``cut``."""
        old, new = cut.old, cut.new
        cut.checked.append(INVARIANTS[0])
        try:
            self.driver.start(timeout=self.start_timeout)
            time.sleep(0.5)
            self.driver.components()
        except TargetError as exc:
            cut.broken.append(f"{INVARIANTS[0]}: {_first_lines(exc)}")
            return
        cut.checked.append(INVARIANTS[1])
        config = self._config()
        system = config.get("system")
        system = system if isinstance(system, dict) else {}
        if system.get("thingName") != THING or system.get("rootpath") != self.root:
            cut.broken.append(
                f"{INVARIANTS[1]}: system.thingName={system.get('thingName')!r} "
                f"rootpath={system.get('rootpath')!r} (expected {THING!r}, {self.root!r})"
            )
        cut.checked.append(INVARIANTS[3])
        status = ""
        if cut.deployment:
            try:
                status = self._wait(cut.deployment, self.resume_timeout).status
            except TargetError as exc:
                cut.broken.append(
                    f"{INVARIANTS[3]}: acknowledged deployment {cut.deployment}: {_first_lines(exc)}"
                )
        self._wait_pending(cut)
        cut.checked.append(INVARIANTS[4])
        if status:
            listed = [d for d in self._deployments() if d.id == cut.deployment]
            time.sleep(0.3)
            again = self.driver.deployment(cut.deployment).status
            if len(listed) != 1 or again != status:
                cut.broken.append(
                    f"{INVARIANTS[4]}: {cut.deployment} listed {len(listed)} times, "
                    f"status {status} then {again}"
                )
        cut.checked.append(INVARIANTS[2])
        try:
            self.driver.start(timeout=self.start_timeout)  # a core update may have restarted it
            version = self._running_version()
        except TargetError as exc:
            cut.broken.append(f"{INVARIANTS[0]}: after the deployment ended: {_first_lines(exc)}")
            return
        if version not in (old, new):
            cut.broken.append(f"{INVARIANTS[2]}: {self.work.component} is {version}, not {old} or {new}")
        elif status == "SUCCEEDED" and version != new:
            cut.broken.append(
                f"{INVARIANTS[1]}: deployment SUCCEEDED but {self.work.component} is {version}, not {new}"
            )
        if not self.work.is_nucleus:
            services = self._config().get("services")
            entry = services.get(self.work.component) if isinstance(services, dict) else None
            committed = entry.get("version") if isinstance(entry, dict) else None
            if committed != version:
                cut.broken.append(
                    f"{INVARIANTS[1]}: config says {self.work.component} {committed}, the core runs {version}"
                )
        cut.checked.append(QOS1_NOT_CLAIMED)
        if version in self.work.versions:
            self.version = version

    def _wait_pending(self, cut: Cut) -> None:
        deadline = time.monotonic() + self.resume_timeout
        pending: list[DeploymentInfo] = []
        while time.monotonic() < deadline:
            pending = [d for d in self._deployments() if d.status not in TERMINAL]
            if not pending:
                return
            time.sleep(0.5)
        ids = ", ".join(f"{d.id} {d.status}" for d in pending)
        cut.broken.append(f"{INVARIANTS[3]}: still in progress after {self.resume_timeout:g} s: {ids}")

    def _deployments(self) -> list[DeploymentInfo]:
        res = self.target.run(self.driver.cli.deployment_list(), timeout=60)
        return parse_deployments(res.stdout) if res.ok else []

    def _config(self) -> dict[str, Any]:
        """The configuration the core would load now, replayed by the core's own code on the target."""
        code = (
            "import json, os, sys\n"
            f"sys.path.insert(0, {self.root + '/lib'!r})\n"
            "from ggnucleus.persist import replay\n"
            f"p = os.path.join({self.root + '/config'!r}, 'config.tlog')\n"
            "p = p if os.path.exists(p) else p + '~'\n"
            "print(json.dumps(replay(p)[0] if os.path.exists(p) else {}))\n"
        )
        res = self.target.run(["python3", "-c", code], timeout=60)
        try:
            data = json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {}
        return data if isinstance(data, dict) else {}

    def close(self) -> None:
        for layer in (self.layer, self._op_layer):
            if layer is not None:
                layer.reap(kill=True)
        self._tmp.cleanup()


def run_campaign(
    campaign: Campaign,
    cuts: int,
    points: tuple[str, ...] = (),
    *,
    write_cuts: int = 0,
    second_cuts: int = 0,
) -> CampaignResult:
    """Set up; the named points once each; ``write_cuts`` cuts after a random Nth write of config.tlog;
    ``cuts`` random-time cuts, the first ``second_cuts`` of them with a second cut during recovery."""
    try:
        campaign.setup()
    except TargetError as exc:  # e.g. a bad version that boot-loops already without a cut
        old, new = campaign._next_versions()
        cut = Cut(0, campaign.model, campaign.seed, campaign.work.name, point="setup: update without a cut")
        cut.old, cut.new, cut.hit = old or "?", new, "-"
        cut.checked.append(INVARIANTS[0])
        cut.broken.append(f"{INVARIANTS[0]}: {_first_lines(exc)}")
        campaign.cuts.append(cut)
        return CampaignResult(
            campaign.seed, campaign.model, campaign.work.name, campaign.update_s, campaign.cuts
        )
    for point in points:
        campaign.cut_once(point)
    for _ in range(write_cuts):
        rel = campaign.rng.choice(WRITE_CUT_FILES)
        campaign.cut_once(f"write:{rel}@{campaign.rng.randint(1, 2)}")
    for i in range(cuts):
        campaign.cut_once(second=i < second_cuts)
    return CampaignResult(campaign.seed, campaign.model, campaign.work.name, campaign.update_s, campaign.cuts)
