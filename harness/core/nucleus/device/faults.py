"""Seeded defects of the nucleus agent: each turns off one behaviour a deployment scenario checks.

Kept in the device package so the agent and the host (option validation, docs) share one list.
"""

from __future__ import annotations

FAULTS: dict[str, str] = {
    "component_output_dropped": "component stdout/stderr is not copied to logs/<ComponentName>.log (C1)",
    "dependents_not_restarted": "updating a dependency does not restart its HARD dependents (C2)",
    "broken_rule_off": "a component never goes BROKEN, however often it errors in a row (C3)",
    "timeouts_ignored": "install/startup/shutdown/recover steps run without their timeouts (C4)",
    "non_atomic_config_write": (
        "config.tlog compaction and metadata files are rewritten in place without fsync (persistence)"
    ),
}


def unknown_faults(faults: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    """The given fault names the agent does not know, sorted (empty when all are known)."""
    return sorted(set(faults) - set(FAULTS))
