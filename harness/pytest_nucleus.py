"""pytest fixtures for the reference nucleus agent and the greengrass-cli driver (deployments, OTA, power).

``nucleus`` builds on ``core_under_test``: for the reference core it installs and starts the harness's
nucleus agent in the same target and root as the broker (once per profile and session, restarted if the
target was power-cycled); any other core is assumed to be a real Greengrass V2 core whose CLI lives under
the profile's ``install_root``. After each test the components it deployed are removed and its unfinished
deployments cancelled, so tests do not see each other's components.

``--nucleus-fault NAME`` (repeatable, or ``HARNESS_NUCLEUS_FAULTS=a,b``) starts the reference nucleus with
a seeded defect, so each scenario can be shown to fail. The fixtures live in the plugin (not in a
suite's conftest) so every suite (deployment, ota, power_loss) shares one nucleus per profile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.core.nucleus.cli_adapter import GreengrassV2Adapter
from harness.core.nucleus.device.faults import FAULTS, unknown_faults
from harness.core.nucleus.device.settings import AgentSettings
from harness.core.nucleus.driver import NucleusDriver
from harness.errors import HarnessError, TargetError
from harness.profiles import DeviceProfile
from harness.pytest_core import CorePool, CoreUnderTest

#: Removing what a test deployed; generous because an emulated target runs every CLI call as a new python3.
CLEANUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
#: How long components must hold RUNNING/FINISHED before the reference nucleus calls a deployment a
#: success: long enough for a run step that fails at once (C3) to be seen failing, even under qemu-user.
DEPLOYMENT_STABLE_S = 0.5


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("harness").addoption(
        "--nucleus-fault",
        action="append",
        default=[],
        dest="harness_nucleus_faults",
        help="start the reference nucleus with this seeded defect (repeatable): " + ", ".join(FAULTS),
    )


def _given_faults(config: pytest.Config) -> list[str]:
    given = list(config.getoption("harness_nucleus_faults", default=[]) or [])
    return given + [f for f in os.environ.get("HARNESS_NUCLEUS_FAULTS", "").split(",") if f]


def pytest_configure(config: pytest.Config) -> None:
    """An unknown fault is a usage error before anything starts."""
    bad = unknown_faults(_given_faults(config))
    if bad:
        raise pytest.UsageError(f"unknown nucleus fault(s) {', '.join(bad)}; allowed: {', '.join(FAULTS)}")


@pytest.fixture(scope="session")
def nucleus_faults(pytestconfig: pytest.Config) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_given_faults(pytestconfig)))


class NucleusPool:
    """One nucleus driver per profile for the session; stopped (cleanly) at its end."""

    def __init__(self, faults: tuple[str, ...]) -> None:
        self.faults = faults
        self.drivers: dict[str, NucleusDriver] = {}

    def get(self, cut: CoreUnderTest, profile: DeviceProfile) -> NucleusDriver:
        from harness.core.reference import ReferenceCore

        driver = self.drivers.get(profile.name)
        if driver is None:
            core = cut.core
            if isinstance(core, ReferenceCore):
                settings = AgentSettings(thing_name=core.name, deployment_stable=DEPLOYMENT_STABLE_S)
                driver = NucleusDriver.reference(
                    core.target, core.root, faults=self.faults, settings=settings
                )
            else:
                target = getattr(core, "target", None)
                if target is None:
                    raise TargetError(f"core {core.name}: no target to run greengrass-cli on")
                driver = NucleusDriver(target, GreengrassV2Adapter(root=profile.install_root))
            driver.install()
            self.drivers[profile.name] = driver
        if not driver.is_running():  # first use, or the target was power-cycled since
            driver.start()
        return driver

    def close(self) -> None:
        while self.drivers:
            _, driver = self.drivers.popitem()
            if driver.target.is_on:
                try:
                    driver.stop(timeout=STOP_TIMEOUT_S)
                except TargetError:
                    pass


@pytest.fixture(scope="session")
def nucleus_pool(core_pool: CorePool, nucleus_faults: tuple[str, ...]) -> Iterator[NucleusPool]:
    pool = NucleusPool(nucleus_faults)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def nucleus(
    profile: DeviceProfile,
    core_under_test: CoreUnderTest,
    nucleus_pool: NucleusPool,
    request: pytest.FixtureRequest,
) -> Iterator[NucleusDriver]:
    """The running nucleus of this profile's core; what the test deploys is removed after it."""
    from harness.pytest_plugin import TargetUnavailable

    try:
        driver = nucleus_pool.get(core_under_test, profile)
    except HarnessError as exc:
        request.node.user_properties.append(("harness_infra", "1"))
        raise TargetUnavailable(
            f"the nucleus of {core_under_test.core.name} could not be started: {exc}"
        ) from None
    driver.deployed.clear()
    driver.deployment_ids.clear()
    yield driver
    driver.clean_up(CLEANUP_TIMEOUT_S)
