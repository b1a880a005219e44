"""The client-device fleet: simulated devices with their own identities, discovery and mutual-TLS MQTT.

``FleetConfig`` -> ``make_plan`` -> ``FleetEngine`` (asyncio bulk engine + a real-SDK slice) -> records ->
``Ledger`` (loss, duplicates, latency per device). ``harness.fleet.load`` runs it against a core on a
profile's target (``harness load``); ``harness.fleet.locust_run`` runs it under locust master/workers.
"""

from __future__ import annotations

from harness.fleet.backoff import POLICIES, Backoff, BackoffPolicy
from harness.fleet.engine import EngineReport, FleetEngine, run_plan
from harness.fleet.ledger import DeviceCounts, Ledger, LedgerSummary, StormSummary, ledger_from
from harness.fleet.plan import (
    BrokerEndpoint,
    DeviceSpec,
    DiscoveryEndpoint,
    FleetConfig,
    FleetPlan,
    Identity,
    make_plan,
)
from harness.fleet.sinks import JsonlSink, Recorder, read_jsonl

__all__ = [
    "POLICIES",
    "Backoff",
    "BackoffPolicy",
    "BrokerEndpoint",
    "DeviceCounts",
    "DeviceSpec",
    "DiscoveryEndpoint",
    "EngineReport",
    "FleetConfig",
    "FleetEngine",
    "FleetPlan",
    "Identity",
    "JsonlSink",
    "Ledger",
    "LedgerSummary",
    "Recorder",
    "StormSummary",
    "ledger_from",
    "make_plan",
    "read_jsonl",
    "run_plan",
]
