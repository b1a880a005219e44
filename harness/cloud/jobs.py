"""V1 software-update jobs (seed 004): the cloud side of the OTA agent, offline.

Why in-memory and small: a job here lives for one scenario. ``create_software_update_job`` validates the
request as the update service does (software ``core`` | ``ota_agent``, an accepted OS/architecture pair,
a log level), naming the field and the allowed values on bad input; each target thing gets an execution
whose status the device side reports (``report``). ``counters`` gives the job's status counters in the
update service's names (queued, in progress, succeeded, failed, rejected, canceled, removed, timed out).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.nucleus.device.ota_agent import ACCEPTED_PAIRS, LOG_LEVELS, SOFTWARE
from harness.errors import InputError

STATUSES = ("QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "CANCELED", "REMOVED", "TIMED_OUT")
TERMINAL = STATUSES[2:]
COUNTERS = {
    "QUEUED": "queued",
    "IN_PROGRESS": "inProgress",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "REJECTED": "rejected",
    "CANCELED": "canceled",
    "REMOVED": "removed",
    "TIMED_OUT": "timedOut",
}
_ids = itertools.count(1)


@dataclass
class Execution:
    thing: str
    status: str = "QUEUED"
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    updated: float = field(default_factory=time.time)


@dataclass
class Job:
    id: str
    document: dict[str, Any]
    package: Path
    executions: dict[str, Execution]


def _choice(value: object, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(f"software update job: field {name!r} is {value!r}; allowed: {', '.join(allowed)}")
    return str(value)


class JobsService:
    """Software-update jobs and their executions per thing."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def create_software_update_job(
        self,
        targets: list[str],
        *,
        software: str,
        version: str,
        os: str,
        architecture: str,
        package: Path,
        log_level: str = "ERROR",
    ) -> Job:
        """A job for ``targets``; the document is what the device's OTA agent receives."""
        _choice(software, "softwareToUpdate", SOFTWARE)
        _choice(log_level, "updateAgentLogLevel", LOG_LEVELS)
        if (os, architecture) not in ACCEPTED_PAIRS:
            allowed = ", ".join(f"{o}/{a}" for o, a in ACCEPTED_PAIRS)
            raise InputError(
                f"software update job: fields 'updateTargetsOperatingSystem'/'updateTargetsArchitecture' "
                f"are {os}/{architecture}; allowed pairs: {allowed}"
            )
        if not targets:
            raise InputError("software update job: field 'updateTargets' is empty; name at least one thing")
        if not package.is_file():
            raise InputError(f"software update job: package {package} does not exist")
        job_id = f"gg-ota-{next(_ids):04d}-{int(time.time())}"
        document = {
            "jobId": job_id,
            "softwareToUpdate": software,
            "version": version,
            "updateTargetsOperatingSystem": os,
            "updateTargetsArchitecture": architecture,
            "updateAgentLogLevel": log_level,
            "sha256": hashlib.sha256(package.read_bytes()).hexdigest(),
        }
        job = Job(job_id, document, package, {t: Execution(t) for t in targets})
        self.jobs[job_id] = job
        return job

    def start(self, job_id: str, thing: str) -> dict[str, Any]:
        """The device takes the job: IN_PROGRESS, and its document."""
        execution = self.execution(job_id, thing)
        execution.status, execution.updated = "IN_PROGRESS", time.time()
        return dict(self.jobs[job_id].document)

    def report(self, job_id: str, thing: str, status: str, reason: str = "", **details: Any) -> None:
        _choice(status, "status", STATUSES)
        execution = self.execution(job_id, thing)
        if execution.status in TERMINAL:
            raise InputError(f"job {job_id} on {thing} is already {execution.status}; cannot report {status}")
        execution.status, execution.reason, execution.updated = status, reason, time.time()
        execution.details.update(details)

    def cancel(self, job_id: str) -> None:
        for execution in self.jobs[job_id].executions.values():
            if execution.status == "QUEUED":
                execution.status = "CANCELED"

    def execution(self, job_id: str, thing: str) -> Execution:
        job = self.jobs.get(job_id)
        if job is None or thing not in job.executions:
            raise InputError(f"no execution of job {job_id} for thing {thing}")
        return job.executions[thing]

    def counters(self, job_id: str) -> dict[str, int]:
        out = dict.fromkeys(COUNTERS.values(), 0)
        for execution in self.jobs[job_id].executions.values():
            out[COUNTERS[execution.status]] += 1
        return out
