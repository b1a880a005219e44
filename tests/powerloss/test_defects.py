"""Every power-loss check can fail: the seeded defects of issue #8 are caught, and the report names the cut.

- ``non_atomic_config_write``: metadata and config compaction rewritten in place without fsync; random cuts
  of a component update under the power-loss model lose acknowledged deployments or the configuration.
- ``non_atomic_launch_switch``: ``alts/current`` replaced by unlink + symlink; a cut right after the unlink
  (an operation cut of the layer) leaves no launch directory: the core cannot start, because its service
  starts the loader through ``alts/current`` (as Greengrass V2 does), so nothing can relink it.
- ``loader_counts_no_tries``: the loader retries a version that cannot start for ever: a boot loop.

The same cuts on the faithful reference core keep every invariant (the baselines below and the scenarios).
Native profile: the defects are in the agent's logic, not in the architecture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.powerloss.campaign import INVARIANTS, Campaign, CampaignResult, run_campaign
from harness.profiles import find_profile
from harness.targets.qemu_user import QemuUserTarget

pytestmark = [pytest.mark.qemu, pytest.mark.slow]
SEED = 20261123


@pytest.fixture
def target() -> Iterator[QemuUserTarget]:
    t = QemuUserTarget(find_profile("native-x86_64"), instance="powerloss-defect")
    yield t
    t.close()


def run(
    target: QemuUserTarget, workload: str, model: str, faults: tuple[str, ...], **kw: object
) -> CampaignResult:
    c = Campaign(target, workload=workload, model=model, faults=faults, seed=SEED)
    try:
        result = run_campaign(c, **kw)  # type: ignore[arg-type]
    finally:
        c.close()
    print(result.report())
    return result


def assert_named(result: CampaignResult, invariant: str) -> None:
    """A broken cut's line names its place (point or time), seed, fault model and the invariant."""
    assert result.broken, f"the defect was not caught:\n{result.report()}"
    hits = [c for c in result.broken if any(b.startswith(invariant) for b in c.broken)]
    assert hits, f"no cut broke {invariant!r}:\n{result.report()}"
    line = hits[0].line()
    assert f"seed {SEED}" in line and result.model in line and invariant in line


def test_non_atomic_config_write_is_caught(target: QemuUserTarget) -> None:
    result = run(target, "component", "power-loss", ("non_atomic_config_write",), cuts=4)
    assert result.broken, f"non_atomic_config_write survived 4 random cuts:\n{result.report()}"
    for cut in result.broken:
        assert cut.at_s is not None and "t=" in cut.line() and f"seed {SEED}" in cut.line()
        assert any(b.split(":")[0] in INVARIANTS for b in cut.broken), cut.line()


@pytest.mark.parametrize("fault", [(), ("non_atomic_launch_switch",)], ids=["reference", "defect"])
def test_non_atomic_launch_switch_is_caught(target: QemuUserTarget, fault: tuple[str, ...]) -> None:
    result = run(target, "nucleus", "crash", fault, cuts=0, points=("unlink:alts/current@1",))
    if not fault:
        assert not result.broken, f"the reference core broke:\n{result.report()}"
        return
    assert_named(result, INVARIANTS[0])
    line = result.broken[0].line()
    assert "point unlink:alts/current@1 (hit unlink:alts/current@1)" in line
    assert "no loader /greengrass/alts/current/distro/bin/loader (alts: no current" in line, line


@pytest.mark.parametrize("fault", [(), ("loader_counts_no_tries",)], ids=["reference", "defect"])
def test_loader_counts_no_tries_is_caught(target: QemuUserTarget, fault: tuple[str, ...]) -> None:
    result = run(target, "rollback", "crash", fault, cuts=1)
    if not fault:
        assert not result.broken, f"the reference core broke:\n{result.report()}"
        return
    assert_named(result, INVARIANTS[0])
