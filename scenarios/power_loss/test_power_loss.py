"""Power-loss scenarios (scenarios.md power_loss): cut the core during updates, check what survives.

Each test gets its own target of the profile (cutting the shared one would break other suites), installs
the reference nucleus on its disk, measures one update, then cuts: at every named cut point of the update
(the agent freezes there, device/cutpoints.py), after the Nth write to config.tlog (the layer freezes
there), at random times in [0, 1.1 x the update], and once more while the core recovers. PL1 updates a
component, PL2 the core software (launch-directory switch, bootstrap, activation), PL3 a core version that
cannot start (the loader's tries and rollback). Fault models: crash (the power cut) and power-loss (the cut
plus the write-back cache layer, so what was not flushed is lost). After every restart the invariants are
checked; the output lists every cut (point, write or time, seed, fault model) and every invariant, and a
failure names the cut that broke which invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from harness.powerloss.campaign import WORKLOADS, Campaign, CampaignResult, run_campaign
from harness.profiles import DeviceProfile
from harness.records import TestRecord
from harness.targets.qemu_user import QemuUserTarget


@pytest.fixture
def own_target(profile: DeviceProfile) -> Iterator[QemuUserTarget]:
    if profile.transport != "qemu-user":
        pytest.skip(f"{profile.name}: power-loss scenarios need a qemu-user target (not {profile.transport})")
    t = QemuUserTarget(profile, instance=f"{profile.name}-powerloss")
    yield t
    t.close()


def campaign(
    target: QemuUserTarget,
    workload: str,
    model: str,
    *,
    cuts: int,
    seed: int | None,
    faults: tuple[str, ...],
    points: bool = True,
    write_cuts: int = 0,
) -> CampaignResult:
    c = Campaign(target, workload=workload, model=model, faults=faults, seed=seed)
    try:
        result = run_campaign(
            c,
            cuts,
            WORKLOADS[workload].points if points else (),
            write_cuts=write_cuts if model == "power-loss" else 0,
            second_cuts=1 if cuts else 0,
        )
    finally:
        c.close()
    print(result.report())
    return result


def _verdict(
    result: CampaignResult,
    request: pytest.FixtureRequest,
    record_result: Callable[[TestRecord], None],
    profile: DeviceProfile,
) -> None:
    """The report row: every cut and every invariant as evidence, the first broken cut as the message."""
    broken = "\n".join(c.line() for c in result.broken)
    marker = request.node.get_closest_marker("requirement")
    test_id = request.node.originalname.removeprefix("test_")
    model = request.node.callspec.params.get("model") if hasattr(request.node, "callspec") else None
    record_result(
        TestRecord(
            id=f"power_loss.{test_id}" + (f"[{model}]" if model else ""),
            suite="power_loss",
            profile=profile.name,
            outcome="failed" if broken else "passed",
            requirement=str(marker.args[0]) if marker else "",
            source=str(marker.kwargs.get("source", "")) if marker else "",
            evidence=result.report(),
            message=(result.broken[0].line() if broken else f"{len(result.cuts)} cuts, every invariant kept"),
            properties={
                "seed": str(result.seed),
                "model": result.model,
                "workload": result.workload,
                "cuts": str(len(result.cuts)),
                "broken": str(len(result.broken)),
                "update_s": f"{result.update_s:.2f}",
            },
        )
    )
    assert not broken, (
        f"invariants broken ({result.workload}, model {result.model}, seed {result.seed}):\n{broken}"
    )


def _models(config: pytest.Config, model: str) -> None:
    wanted = config.getoption("harness_power_models", default=[]) or ["crash", "power-loss"]
    if model not in wanted:
        pytest.skip(f"fault model {model} not selected (--power-model)")


@pytest.mark.requirement(
    "A component update cut at every named point, after the Nth config write, at random times and again "
    "during recovery: the core starts, keeps its last committed configuration, runs the old or the new "
    "version and ends the interrupted deployment with exactly one terminal status",
    source="scenarios.md power_loss; core-behaviour.md Persistence a core must get right",
)
@pytest.mark.parametrize("model", ["crash", "power-loss"])
def test_pl1_component_update_cut(
    model: str,
    own_target: QemuUserTarget,
    power_cuts: int,
    power_seed: int | None,
    nucleus_faults: tuple[str, ...],
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
    record_result: Callable[[TestRecord], None],
    profile: DeviceProfile,
) -> None:
    _models(pytestconfig, model)
    result = campaign(
        own_target, "component", model, cuts=power_cuts, seed=power_seed, faults=nucleus_faults, write_cuts=2
    )
    _verdict(result, request, record_result, profile)


@pytest.mark.requirement(
    "A core-software update cut at each step of the launch-directory switch, during bootstrap, after "
    "activation before the status report, at random times and again during recovery: same invariants",
    source="scenarios.md power_loss; core-behaviour.md Updating the core software (OTA)",
)
def test_pl2_core_update_cut(
    own_target: QemuUserTarget,
    power_cuts: int,
    power_seed: int | None,
    nucleus_faults: tuple[str, ...],
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
    record_result: Callable[[TestRecord], None],
    profile: DeviceProfile,
) -> None:
    _models(pytestconfig, "power-loss")
    result = campaign(
        own_target, "nucleus", "power-loss", cuts=power_cuts, seed=power_seed, faults=nucleus_faults
    )
    _verdict(result, request, record_result, profile)


@pytest.mark.requirement(
    "An update to a core version that cannot start, cut during the loader's rollback: the core starts the "
    "old version (no boot loop) and the deployment ends FAILED exactly once",
    source="scenarios.md power_loss; core-behaviour.md Updating the core software (OTA)",
)
def test_pl3_rollback_cut(
    own_target: QemuUserTarget,
    power_seed: int | None,
    nucleus_faults: tuple[str, ...],
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
    record_result: Callable[[TestRecord], None],
    profile: DeviceProfile,
) -> None:
    _models(pytestconfig, "power-loss")
    result = campaign(own_target, "rollback", "power-loss", cuts=1, seed=power_seed, faults=nucleus_faults)
    _verdict(result, request, record_result, profile)
