"""Update-and-cut campaigns: cut the core during a deployment, restart it, check the invariants.

Why this shape: it is what the best update systems test (scenarios.md power_loss): repeat update-and-cut
at a random time in [0, 1.1 x the measured update duration] (the seed is printed, so any cut can be
replayed), plus named cut points where the agent freezes (``GG_CUTPOINT``, device/cutpoints.py). Two fault
models: ``crash`` (the target's power cut: every process dies, the disk keeps all writes) and
``power-loss`` (the same cut with the write-back cache layer under the core's root, so unflushed writes are
lost too). After every restart the invariants of scenarios.md are checked and each cut is recorded with
the invariants it checked and the ones it broke.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.nucleus.cli_adapter import TERMINAL, DeploymentInfo, parse_deployments
from harness.core.nucleus.device.settings import AgentSettings
from harness.core.nucleus.driver import NucleusDriver
from harness.errors import InputError, TargetError
from harness.powerloss.layer import PowerLossLayer
from harness.targets.qemu_user import QemuUserTarget

MODELS = ("crash", "power-loss")
THING = "powerloss-core"
COMPONENT = "com.example.HelloWorld"
VERSIONS = ("1.0.0", "1.1.0")
CUT_MARKER = "/tmp/gg-cutpoint"
#: How long an interrupted deployment may take to reach a terminal state after the restart.
RESUME_TIMEOUT_S = 90.0
INVARIANTS = (
    "starts (no boot loop)",
    "config is the last committed state (thing name, root path never empty)",
    "running version is old or new",
    "interrupted deployment resumes or ends terminal",
    "exactly one terminal status",
    "QoS 1 messages acknowledged survive (where persistence is claimed)",
)


@dataclass
class Cut:
    """One cut: where (a named point or a time), the seed, the fault model, what was checked and broken."""

    index: int
    model: str
    seed: int
    point: str = ""
    at_s: float | None = None
    hit: str = ""
    deployment: str = ""
    checked: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    def where(self) -> str:
        if self.point:
            return f"point {self.point}" + (f" (hit {self.hit})" if self.hit else " (not reached)")
        return f"t={self.at_s:.3f}s" if self.at_s is not None else "none"

    def line(self) -> str:
        verdict = "OK" if not self.broken else "BROKEN: " + "; ".join(self.broken)
        return f"cut {self.index} [{self.model}, seed {self.seed}] {self.where()}: {verdict}"


@dataclass
class CampaignResult:
    seed: int
    model: str
    update_s: float
    cuts: list[Cut]

    @property
    def broken(self) -> list[Cut]:
        return [c for c in self.cuts if c.broken]

    def report(self) -> str:
        head = (
            f"power-loss campaign: model {self.model}, seed {self.seed} (replay: --seed {self.seed}), "
            f"update {self.update_s:.2f} s, {len(self.cuts)} cuts, invariants checked after each: "
            + "; ".join(INVARIANTS)
        )
        return "\n".join([head, *(c.line() for c in self.cuts)])

    def to_json(self) -> str:
        return json.dumps(
            {
                "seed": self.seed,
                "model": self.model,
                "update_s": self.update_s,
                "cuts": [c.__dict__ for c in self.cuts],
            },
            indent=1,
        )


class Campaign:
    """A reference nucleus on its own target, updated and cut again and again."""

    def __init__(
        self,
        target: QemuUserTarget,
        recipes: Path,
        artifacts: Path,
        *,
        model: str = "power-loss",
        faults: tuple[str, ...] = (),
        seed: int | None = None,
        root: str = "/greengrass",
    ) -> None:
        if model not in MODELS:
            raise InputError(f"power-loss model {model!r}: allowed values {', '.join(MODELS)}")
        self.target = target
        self.recipes, self.artifacts = recipes, artifacts
        self.model = model
        self.seed = seed if seed is not None else random.randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.root = root
        settings = AgentSettings(thing_name=THING, deployment_stable=0.5, compact_after=8)
        self.driver = NucleusDriver.reference(target, root, faults=faults, settings=settings)
        self.layer = PowerLossLayer(target, root) if model == "power-loss" else None
        self.version = ""  # the last version whose deployment the core reported SUCCEEDED
        self.update_s = 0.0
        self.cuts: list[Cut] = []

    # -- power --------------------------------------------------------------------------------------
    def _power_on(self) -> None:
        self.target.power_on()
        self.target.run(["rm", "-f", CUT_MARKER], timeout=30)
        if self.layer is not None:
            self.layer.mount()

    def _cut(self) -> None:
        self.target.power_cut()
        if self.layer is not None:
            self.layer.reap()

    # -- setup --------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Install on the disk, then measure one update without a cut (the time base of random cuts)."""
        self.target.power_on()
        self.driver.install()
        self.target.power_off()
        self._power_on()
        self.driver.start()
        self._deploy_and_wait(VERSIONS[0])
        began = time.monotonic()
        self._deploy_and_wait(VERSIONS[1])
        self.update_s = time.monotonic() - began

    def _deploy_and_wait(self, version: str) -> None:
        dep = self.driver.deploy(self.recipes, self.artifacts, merge={COMPONENT: version})
        info = self.driver.wait_deployment(dep, RESUME_TIMEOUT_S)
        if not info.succeeded:
            raise TargetError(f"setup: deploying {COMPONENT} {version} failed: {info.summary()}")
        self.version = version

    # -- one cut ------------------------------------------------------------------------------------
    def cut_once(self, point: str = "") -> Cut:
        """Update to the other version and cut (at ``point`` or at a random time), restart, check."""
        cut = Cut(index=len(self.cuts), model=self.model, seed=self.seed, point=point)
        new = VERSIONS[1] if self.version == VERSIONS[0] else VERSIONS[0]
        old = self.version
        if point:
            self.driver.stop()
            self.driver.start(env={"GG_CUTPOINT": point, "GG_CUTPOINT_MARKER": CUT_MARKER})
        else:
            cut.at_s = self.rng.uniform(0.0, 1.1 * self.update_s)
        began = time.monotonic()
        try:
            cut.deployment = self.driver.deploy(self.recipes, self.artifacts, merge={COMPONENT: new})
        except TargetError:
            cut.deployment = ""  # the cut point froze the core before it acknowledged the request
        if point:
            deadline = time.monotonic() + RESUME_TIMEOUT_S
            while time.monotonic() < deadline and not cut.hit:
                cut.hit = (self.target.read_text(CUT_MARKER) or "").strip()
                time.sleep(0.05)
        else:
            assert cut.at_s is not None
            time.sleep(max(0.0, cut.at_s - (time.monotonic() - began)))
        self._cut()
        self._power_on()
        self.check(cut, old, new)
        self.cuts.append(cut)
        return cut

    # -- invariants ---------------------------------------------------------------------------------
    def check(self, cut: Cut, old: str, new: str) -> None:
        """The invariants of scenarios.md power_loss after a restart, recorded on ``cut``."""
        cut.checked.append(INVARIANTS[0])
        try:
            self.driver.start()
            time.sleep(0.5)
            if not self.driver.is_running():
                raise TargetError("the nucleus exited right after starting")
        except TargetError as exc:
            cut.broken.append(f"{INVARIANTS[0]}: {str(exc).splitlines()[0]}")
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
                info = self.driver.wait_deployment(cut.deployment, RESUME_TIMEOUT_S)
                status = info.status
            except TargetError as exc:
                cut.broken.append(
                    f"{INVARIANTS[3]}: acknowledged deployment {cut.deployment}: {str(exc).splitlines()[0]}"
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
        version, _state = self.driver.components().get(COMPONENT, ("absent", "absent"))
        # FAILED may leave either version (a rollback is not promised after a cut); SUCCEEDED means new
        expected = new if status == "SUCCEEDED" else ""
        if version not in (old, new):
            cut.broken.append(f"{INVARIANTS[2]}: {COMPONENT} is {version}, not {old} or {new}")
        elif expected and version != expected:
            cut.broken.append(
                f"{INVARIANTS[1]}: deployment {status} but {COMPONENT} is {version} (expected {expected})"
            )
        services = config.get("services")
        entry = services.get(COMPONENT) if isinstance(services, dict) else None
        committed = entry.get("version") if isinstance(entry, dict) else None
        if committed != version:
            cut.broken.append(
                f"{INVARIANTS[1]}: config says {COMPONENT} {committed}, the core runs {version}"
            )
        cut.checked.append(INVARIANTS[5] + ": n/a, the reference core runs mosquitto with persistence false")
        if version in VERSIONS:
            self.version = version

    def _wait_pending(self, cut: Cut) -> None:
        deadline = time.monotonic() + RESUME_TIMEOUT_S
        while time.monotonic() < deadline:
            pending = [d for d in self._deployments() if d.status not in TERMINAL]
            if not pending:
                return
            time.sleep(0.5)
        cut.broken.append(f"{INVARIANTS[3]}: deployments still in progress after {RESUME_TIMEOUT_S:g} s")

    def _deployments(self) -> list[DeploymentInfo]:
        res = self.target.run(self.driver.cli.deployment_list(), timeout=60)
        return parse_deployments(res.stdout) if res.ok else []

    def _config(self) -> dict[str, object]:
        """The configuration the core would load now, replayed by the core's own code on the target."""
        code = (
            "import json, os, sys\n"
            f"sys.path.insert(0, {self.root + '/lib'!r})\n"
            "from ggnucleus.persist import replay\n"
            f"d = {self.root + '/config'!r}\n"
            "p = os.path.join(d, 'config.tlog')\n"
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
        if self.layer is not None:
            self.layer.reap(kill=True)


def run_campaign(campaign: Campaign, cuts: int, points: tuple[str, ...] = ()) -> CampaignResult:
    """Set up, then the named points once each, then ``cuts`` random-time cuts."""
    campaign.setup()
    for point in points:
        campaign.cut_once(point)
    for _ in range(cuts):
        campaign.cut_once()
    return CampaignResult(campaign.seed, campaign.model, campaign.update_s, campaign.cuts)
