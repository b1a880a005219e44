"""The connector's output (seed 003): the topic and the exact success and failure payloads."""

from __future__ import annotations

import json
from typing import Literal

STATUS_TOPIC = "dockerapplicationdeploymentconnector/message/status"
SUCCESS_TEXT = "Successfully triggered docker-compose up"
#: The project name of every ``docker-compose`` command the connector runs: container names start with it.
PROJECT_PREFIX = "greengrassdockerapplicationdeployment"
ErrorType = Literal["InvalidParameter", "InternalError"]
ERROR_TYPES: tuple[ErrorType, ...] = ("InvalidParameter", "InternalError")
SUCCESS_KEYS = (
    "status",
    "GreengrassDockerApplicationDeploymentStatus",
    "S3Bucket",
    "ComposeFileName",
    "ComposeFileVersion",
)
FAILURE_KEYS = ("status", "error_message", "error")


def success(bucket: str, key: str, version: str) -> dict[str, str]:
    return {
        "status": "success",
        "GreengrassDockerApplicationDeploymentStatus": SUCCESS_TEXT,
        "S3Bucket": bucket,
        "ComposeFileName": key,
        "ComposeFileVersion": version,
    }


def failure(error: ErrorType, message: str) -> dict[str, str]:
    return {"status": "fail", "error_message": message, "error": error}


def encode(payload: dict[str, str]) -> bytes:
    return json.dumps(payload).encode()


def conformance_problems(payload: object, *, expect: dict[str, str] | None = None) -> list[str]:
    """How a received payload departs from seed 003 (field set, status values, error types, given values)."""
    if not isinstance(payload, dict):
        return [f"the payload is not a JSON object: {payload!r}"]
    problems: list[str] = []
    status = payload.get("status")
    keys = SUCCESS_KEYS if status == "success" else FAILURE_KEYS if status == "fail" else None
    if keys is None:
        return [f"'status' is {status!r}, not 'success' or 'fail'"]
    missing = [k for k in keys if k not in payload]
    extra = [k for k in payload if k not in keys]
    if missing:
        problems.append(f"fields missing from the {status} payload: {', '.join(missing)}")
    if extra:
        problems.append(f"fields not in seed 003's {status} payload: {', '.join(extra)}")
    non_str = [k for k, v in payload.items() if not isinstance(v, str)]
    if non_str:
        problems.append(f"fields that are not strings: {', '.join(non_str)}")
    if status == "success" and payload.get("GreengrassDockerApplicationDeploymentStatus") != SUCCESS_TEXT:
        problems.append(
            f"GreengrassDockerApplicationDeploymentStatus is "
            f"{payload.get('GreengrassDockerApplicationDeploymentStatus')!r}, not {SUCCESS_TEXT!r}"
        )
    if status == "fail":
        if payload.get("error") not in ERROR_TYPES:
            problems.append(f"'error' is {payload.get('error')!r}, not one of {', '.join(ERROR_TYPES)}")
        if not str(payload.get("error_message", "")).strip():
            problems.append("'error_message' is empty")
    for k, v in (expect or {}).items():
        if k in payload and payload[k] != v:
            problems.append(f"{k} is {payload[k]!r}, expected {v!r}")
    return problems
