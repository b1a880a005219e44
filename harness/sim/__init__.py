"""Fleet model: a discrete-event simulation of 10^4-10^6 devices reconnecting to a core after a disruption.

``simulate(SimConfig(...))`` runs one scenario and returns ``SimMetrics``; ``sweep`` runs several in parallel
processes; ``predict``/``compare`` turn a measured calibration into a prediction and score it against a real
storm. See README.md here for the model, its assumptions and the validation procedure, and
``harness.sim.cohort`` for why the fast engine agrees with the simpy reference model.
"""

from __future__ import annotations

from harness.sim.calibration import Calibration, load_calibration, save_calibration
from harness.sim.config import EVENTS, POLICIES, POLICY_TITLES, Event, Policy, ServiceTime, SimConfig
from harness.sim.metrics import Series, SimMetrics
from harness.sim.run import ENGINES, Engine, simulate, sweep
from harness.sim.validate import MeasuredStorm, calibrated_config, compare, predict, predict_seeds

__all__ = [
    "ENGINES",
    "EVENTS",
    "POLICIES",
    "POLICY_TITLES",
    "Calibration",
    "Engine",
    "Event",
    "MeasuredStorm",
    "Policy",
    "Series",
    "ServiceTime",
    "SimConfig",
    "SimMetrics",
    "calibrated_config",
    "compare",
    "load_calibration",
    "predict",
    "predict_seeds",
    "save_calibration",
    "simulate",
    "sweep",
]
