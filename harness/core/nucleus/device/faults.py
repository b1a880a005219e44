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
    "rollback_disabled": (
        "an update is never rolled back: the loader gives up after three failed starts, an unhealthy"
        " nucleus stays, a failed V1 OTA job keeps the new version (O2, O3)"
    ),
    "health_check_always_passes": "after a nucleus update the health check passes whatever happens (O2)",
    "update_scripts_unchecked": (
        "the V1 OTA agent checks neither the managedRespawn scripts' presence, owner and mode nor their"
        " exit status (O3)"
    ),
    "ota_requirements_unchecked": "the V1 OTA agent accepts any OS/architecture pair and any free space (O4)",
    "downgrade_unchecked": "a nucleus update to the same or an older version is applied (O5)",
    "non_atomic_launch_switch": (
        "launch-directory links (alts/current, old, new, broken) are replaced by unlink + symlink, not by"
        " rename (power loss)"
    ),
    "broker_not_restarted": (
        "the core daemon's start (ggc-daemon, used by a V1 update) starts the nucleus but not the MQTT"
        " broker, so clients never reconnect after an update (O6, O1)"
    ),
    "loader_counts_no_tries": (
        "the loader never counts failed starts, so a version that fails to start boot-loops (power loss, O2)"
    ),
}


def unknown_faults(faults: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    """The given fault names the agent does not know, sorted (empty when all are known)."""
    return sorted(set(faults) - set(FAULTS))
