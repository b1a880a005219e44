"""Run fleet-model scenarios: one at a time, or a sweep in a bounded pool of worker processes.

Processes rather than threads because the engines are CPU-bound Python; the pool is bounded by the CPU count
so a sweep of many policies cannot oversubscribe a small machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Literal, get_args

from harness.sim.config import SimConfig
from harness.sim.metrics import SimMetrics

Engine = Literal["cohort", "naive"]
ENGINES: tuple[Engine, ...] = get_args(Engine)


def simulate(config: SimConfig, engine: Engine = "cohort") -> SimMetrics:
    """One run of ``config``: ``cohort`` is the fast engine, ``naive`` the simpy per-device reference."""
    if engine == "cohort":
        from harness.sim.cohort import run_cohort

        return run_cohort(config)
    if engine == "naive":
        from harness.sim.naive import run_naive

        return run_naive(config)
    raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")


def sweep(
    configs: Sequence[SimConfig], engine: Engine = "cohort", *, max_workers: int | None = None
) -> list[SimMetrics]:
    """``simulate`` every config, in parallel processes (at most ``max_workers``, default the CPU count).

    Results come back in the order of ``configs``. A single config, or ``max_workers=1``, runs in this
    process, which keeps tracebacks simple and skips the cost of starting workers.
    """
    workers = min(len(configs), max_workers or os.cpu_count() or 1)
    if workers <= 1:
        return [simulate(c, engine) for c in configs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(simulate, configs, [engine] * len(configs)))
