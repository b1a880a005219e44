"""Power-loss scenarios (scenarios.md power_loss): cut the core during updates, check what survives.

Each test gets its own target of the profile from the target factory (cutting the shared one would break
other suites), installs the reference nucleus on its disk, measures one update, then cuts: at every named
cut point of the update (the agent freezes there, device/cutpoints.py), after the Nth write to config.tlog
(the layer freezes there; qemu-user only), at random times in [0, 1.1 x the update], and once more while the
core recovers. PL1 updates a component, PL2 the core software (launch-directory switch, bootstrap,
activation), PL3 a core version that cannot start (the loader's tries and rollback).

Fault models, as the target allows (harness.powerloss.campaign.models_for): on qemu-user, crash (the power
cut) and power-loss (the cut plus the write-back cache layer, so what was not flushed is lost); on a
qemu-system board, power-loss is the board's own cut, vm-kill (QEMU killed: the guest kernel's page cache is
lost for real), its disk fsck'd before every boot and each result in the cut's line; crash is skipped there.
After every restart the invariants are checked; the output lists every cut (point, write or time, seed,
fault model, fsck result) and every invariant, and a failure names the cut that broke which invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from harness.errors import InputError
from harness.powerloss.campaign import (
    WORKLOADS,
    Campaign,
    CampaignResult,
    resolve_model,
    run_campaign,
    unsupported_reason,
)
from harness.profiles import DeviceProfile
from harness.records import TestRecord
from harness.targets.base import Target
from harness.targets.factory import make_target


@pytest.fixture
def own_target(profile: DeviceProfile) -> Iterator[Target]:
    t = make_target(profile, instance=f"{profile.name}-powerloss")
    try:
        reason = unsupported_reason(t)
        if reason:
            pytest.skip(reason)
        yield t
    finally:
        t.close()


def campaign(
    target: Target,
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
    c.on_cut = lambda cut: print(cut.line(), flush=True)  # progress with -s (a VM cut takes minutes)
    try:
        result = run_campaign(
            c,
            cuts,
            WORKLOADS[workload].points if points else (),
            write_cuts=write_cuts if c.layer is not None else 0,  # operation cuts need the layer
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
                "fault_models": ",".join(sorted({c.model for c in result.cuts})),
                "fsck": _fsck_summary(result),
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


def _fsck_summary(result: CampaignResult) -> str:
    """How the disk checks after the cuts went ("" when the target checks no disk)."""
    checks = sum(len(c.fsck) for c in result.cuts)
    if not checks:
        return ""
    dirty = sum(c.fsck_not_clean for c in result.cuts)
    return f"{checks} fsck after cuts, {dirty} found the file system not clean (then repaired)"


def _models(config: pytest.Config, target: Target, model: str) -> None:
    """Skip a model the user did not select (``--power-model``) or the target cannot give."""
    try:
        resolved = resolve_model(target, model)
    except InputError as exc:
        pytest.skip(str(exc))
    wanted = config.getoption("harness_power_models", default=[]) or ["crash", "power-loss"]
    if model not in wanted and resolved not in wanted:
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
    own_target: Target,
    power_cuts: int,
    power_seed: int | None,
    nucleus_faults: tuple[str, ...],
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
    record_result: Callable[[TestRecord], None],
    profile: DeviceProfile,
) -> None:
    _models(pytestconfig, own_target, model)
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
    own_target: Target,
    power_cuts: int,
    power_seed: int | None,
    nucleus_faults: tuple[str, ...],
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
    record_result: Callable[[TestRecord], None],
    profile: DeviceProfile,
) -> None:
    _models(pytestconfig, own_target, "power-loss")
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
    own_target: Target,
    power_seed: int | None,
    nucleus_faults: tuple[str, ...],
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
    record_result: Callable[[TestRecord], None],
    profile: DeviceProfile,
) -> None:
    _models(pytestconfig, own_target, "power-loss")
    result = campaign(own_target, "rollback", "power-loss", cuts=1, seed=power_seed, faults=nucleus_faults)
    _verdict(result, request, record_result, profile)
