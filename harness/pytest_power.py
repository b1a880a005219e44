"""pytest options for power-loss scenarios (scenarios/power_loss): cut count, seed, fault model.

``--power-cuts N`` random cuts per scenario (CI: a few; the 100-cut campaign is bench/bench_powerloss.py),
``--power-seed S`` replays a printed campaign, ``--power-model crash|power-loss|vm-kill`` picks the fault
model of the random-cut scenario (default: crash and power-loss; on a qemu-system board power-loss is its
own cut, vm-kill, and crash is skipped).
"""

from __future__ import annotations

import pytest

from harness.powerloss.campaign import MODELS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness")
    group.addoption(
        "--power-cuts",
        type=int,
        default=3,
        dest="harness_power_cuts",
        help="random cuts per power-loss scenario (default 3)",
    )
    group.addoption(
        "--power-seed",
        type=int,
        default=None,
        dest="harness_power_seed",
        help="seed of the random cuts (printed by every campaign, to replay it)",
    )
    group.addoption(
        "--power-model",
        action="append",
        default=[],
        choices=MODELS,
        dest="harness_power_models",
        help="fault model of the power-loss scenarios (repeatable; default: crash and power-loss; "
        "on qemu-system boards power-loss runs as vm-kill, the VM killed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """A negative cut count is a usage error before anything starts."""
    n = config.getoption("harness_power_cuts", default=3)
    if n is not None and int(n) < 0:
        raise pytest.UsageError(f"--power-cuts {n}: allowed values are 0 or more")


@pytest.fixture(scope="session")
def power_cuts(pytestconfig: pytest.Config) -> int:
    return int(pytestconfig.getoption("harness_power_cuts", default=3))


@pytest.fixture(scope="session")
def power_seed(pytestconfig: pytest.Config) -> int | None:
    value = pytestconfig.getoption("harness_power_seed", default=None)
    return int(value) if value is not None else None
