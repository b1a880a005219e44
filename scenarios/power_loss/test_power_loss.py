"""Power-loss scenarios (scenarios.md power_loss): cut the core during updates, check what survives.

Each test gets its own target of the profile (cutting the shared one would break other suites), installs
the reference nucleus, measures one update, then cuts: at named cut points (the agent freezes there,
device/cutpoints.py) and at random times in [0, 1.1 x the update], under the crash model (the target's
power cut) and the power-loss model (plus the write-back cache layer under the core's root, so unflushed
writes are lost). After every restart the invariants are checked; the captured output lists every cut
(point or time, seed, fault model) and every invariant, and a failure names the cut that broke which one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.paths import FIXTURES_DIR
from harness.powerloss.campaign import Campaign, CampaignResult, run_campaign
from harness.profiles import DeviceProfile
from harness.targets.qemu_user import QemuUserTarget

RECIPES = FIXTURES_DIR / "components" / "recipes"
ARTIFACTS = FIXTURES_DIR / "components" / "artifacts"
#: Named points of a component deployment and of the durable writes under it.
POINTS = (
    "config.tlog.append",
    "meta.between_renames",
    "deployment.planned",
    "deployment.committed",
    "deployment.applied",
    "deployment.finishing",
)


@pytest.fixture
def own_target(profile: DeviceProfile) -> Iterator[QemuUserTarget]:
    if profile.transport != "qemu-user":
        pytest.skip(
            f"{profile.name}: power-loss scenarios need a qemu-user target (transport {profile.transport})"
        )
    t = QemuUserTarget(profile, instance=f"{profile.name}-powerloss")
    yield t
    t.close()


def _run(
    target: QemuUserTarget,
    model: str,
    cuts: int,
    seed: int | None,
    points: tuple[str, ...] = (),
    faults: tuple[str, ...] = (),
) -> CampaignResult:
    campaign = Campaign(target, RECIPES, ARTIFACTS, model=model, faults=faults, seed=seed)
    try:
        result = run_campaign(campaign, cuts, points)
    finally:
        campaign.close()
    print(result.report())
    return result


@pytest.mark.requirement(
    "After a power loss at any named point of a deployment and at random times during an update, the core "
    "starts, keeps its last committed configuration, runs the old or the new version, finishes the "
    "interrupted deployment with exactly one terminal status",
    source="scenarios.md power_loss; core-behaviour.md Persistence a core must get right",
)
@pytest.mark.parametrize("model", ["crash", "power-loss"])
def test_pl1_update_and_cut(
    model: str,
    own_target: QemuUserTarget,
    power_cuts: int,
    power_seed: int | None,
    pytestconfig: pytest.Config,
) -> None:
    models = pytestconfig.getoption("harness_power_models", default=[]) or ["crash", "power-loss"]
    if model not in models:
        pytest.skip(f"fault model {model} not selected (--power-model)")
    result = _run(own_target, model, power_cuts, power_seed, points=POINTS if model == "power-loss" else ())
    broken = "\n".join(c.line() for c in result.broken)
    assert not broken, f"invariants broken (seed {result.seed}, model {model}):\n{broken}"
