"""The connector's parameters (seed 003), validated the way the connector's parameter definitions do.

Every value is a string (Greengrass V1 connector parameters are); a bad one is an ``InvalidParameter`` failure
whose message names the parameter, the value and what is allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

BOOLEAN = re.compile(r"^(true|false)$", re.IGNORECASE)
REQUIRED = ("DockerComposeFileS3Bucket", "DockerComposeFileS3Key", "DockerComposeFileDestinationPath")
#: name -> (pattern, what is allowed, default)
RULES: dict[str, tuple[re.Pattern[str], str, str]] = {
    "DockerComposeFileS3Bucket": (
        re.compile(r"^[a-zA-Z0-9\-.]{3,63}$"),
        "3-63 letters, digits, '-' or '.'",
        "",
    ),
    "DockerComposeFileS3Key": (re.compile(r"^.+$"), "a non-empty object key", ""),
    "DockerComposeFileS3Version": (re.compile(r"^.*$"), "an object version id (optional)", ""),
    "DockerComposeFileDestinationPath": (re.compile(r"^/.*$"), "an absolute directory path", ""),
    "DockerUserId": (re.compile(r"^[0-9]{1,5}$"), "a numeric Linux UID (1-5 digits); empty for ggc_user", ""),
    "AWSSecretsArnList": (re.compile(r"^\[.*\]$"), "a JSON list of secret ARNs", "[]"),
    "DockerContainerStatusLogFrequency": (re.compile(r"^[1-9][0-9]{0,3}$"), "seconds, 1-9999", "300"),
    "ForceDeploy": (BOOLEAN, "True or False", "False"),
    "DockerPullBeforeUp": (BOOLEAN, "True or False", "False"),
    "StopContainersOnNewDeployment": (BOOLEAN, "True or False", "True"),
    "DockerOfflineMode": (BOOLEAN, "True or False", "False"),
}


class InvalidParameter(ValueError):
    """A parameter the connector refuses; the message is the ``error_message`` it publishes."""


@dataclass(frozen=True)
class ConnectorParameters:
    bucket: str
    key: str
    version: str
    destination: str
    user_id: str
    secrets: tuple[str, ...]
    status_log_s: int
    force_deploy: bool
    pull_before_up: bool
    stop_on_new_deployment: bool
    offline_mode: bool


def parse(given: Mapping[str, object]) -> ConnectorParameters:
    """Validate the deployment's parameters; InvalidParameter names the first bad one."""
    unknown = sorted(set(given) - set(RULES))
    if unknown:
        raise InvalidParameter(f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(RULES)}")
    values: dict[str, str] = {}
    for name, (pattern, allowed, default) in RULES.items():
        raw = given.get(name)
        if raw is None or raw == "":
            if name in REQUIRED:
                raise InvalidParameter(f"parameter {name} is required ({allowed})")
            values[name] = default
            continue
        if not isinstance(raw, str):
            raise InvalidParameter(f"parameter {name} must be a string, got {type(raw).__name__}")
        if not pattern.match(raw):
            raise InvalidParameter(f"parameter {name} has the invalid value {raw!r}; allowed: {allowed}")
        values[name] = raw
    try:
        secrets = json.loads(values["AWSSecretsArnList"])
    except ValueError:
        secrets = None
    if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
        raise InvalidParameter(
            f"parameter AWSSecretsArnList has the invalid value {values['AWSSecretsArnList']!r}; "
            "allowed: a JSON list of secret ARNs"
        )
    if secrets:
        raise InvalidParameter(
            "parameter AWSSecretsArnList: private registry credentials are not supported by the harness's "
            "connector (no secrets service offline); allowed: []"
        )
    return ConnectorParameters(
        bucket=values["DockerComposeFileS3Bucket"],
        key=values["DockerComposeFileS3Key"],
        version=values["DockerComposeFileS3Version"],
        destination=values["DockerComposeFileDestinationPath"].rstrip("/") or "/",
        user_id=values["DockerUserId"],
        secrets=tuple(secrets),
        status_log_s=int(values["DockerContainerStatusLogFrequency"]),
        force_deploy=values["ForceDeploy"].lower() == "true",
        pull_before_up=values["DockerPullBeforeUp"].lower() == "true",
        stop_on_new_deployment=values["StopContainersOnNewDeployment"].lower() == "true",
        offline_mode=values["DockerOfflineMode"].lower() == "true",
    )
