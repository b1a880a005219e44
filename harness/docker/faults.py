"""Seeded defects of the harness's connector: each breaks one behaviour a docker scenario checks."""

from __future__ import annotations

from collections.abc import Iterable

from harness.errors import InputError

FAULTS: dict[str, str] = {
    "wrong_prefix": "containers are named with project 'dockerapplication' instead of "
    "'greengrassdockerapplicationdeployment' (DK1)",
    "failure_without_error": "failure payloads lack the 'error' field (DK2)",
    "invalid_parameter_ignored": "an invalid parameter is not refused; the deployment goes on (DK2)",
    "old_containers_kept": "a new deployment leaves the previous containers running although "
    "StopContainersOnNewDeployment is True (DK3)",
    "offline_ignores_stored": "offline mode does not fall back to the stored compose file (DK4)",
    "offline_missing_ok": "offline mode reports success when there is no stored compose file (DK4)",
    "pull_skipped": "DockerPullBeforeUp is ignored: up runs with the images already on the core (DK6)",
    "no_down_on_stop": "'docker-compose down' is not run when the core stops (DK5)",
}


def check_faults(faults: Iterable[str]) -> frozenset[str]:
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise InputError(
            f"unknown docker connector fault(s) {', '.join(unknown)}; allowed: {', '.join(FAULTS)}"
        )
    return frozenset(faults)
