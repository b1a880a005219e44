"""The connector's pure parts: parameter validation, payload conformance, the compose store over real TLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.docker import status
from harness.docker.faults import FAULTS, check_faults
from harness.docker.params import InvalidParameter, parse
from harness.docker.store import ComposeStore, FetchError, fetch
from harness.errors import InputError

REPO = Path(__file__).resolve().parents[2]
GOOD = {
    "DockerComposeFileS3Bucket": "my-bucket",
    "DockerComposeFileS3Key": "production-docker-compose.yml",
    "DockerComposeFileS3Version": "123",
    "DockerComposeFileDestinationPath": "/home/username/myCompose",
    "DockerUserId": "1000",
    "AWSSecretsArnList": "[]",
    "DockerContainerStatusLogFrequency": "30",
    "ForceDeploy": "True",
    "DockerPullBeforeUp": "True",
}


def test_seed_example_parameters_parse() -> None:
    p = parse(GOOD)
    assert (p.bucket, p.key, p.version, p.destination, p.user_id) == (
        "my-bucket",
        "production-docker-compose.yml",
        "123",
        "/home/username/myCompose",
        "1000",
    )
    assert p.force_deploy and p.pull_before_up and p.stop_on_new_deployment and not p.offline_mode
    assert p.status_log_s == 30


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DockerUserId", "ggc_user", "a numeric Linux UID"),
        ("ForceDeploy", "yes", "True or False"),
        ("DockerOfflineMode", "1", "True or False"),
        ("DockerComposeFileDestinationPath", "relative/dir", "an absolute directory path"),
        ("DockerComposeFileS3Bucket", "x", "3-63 letters"),
        ("DockerContainerStatusLogFrequency", "0", "seconds, 1-9999"),
        ("AWSSecretsArnList", "not json", "a JSON list"),
    ],
)
def test_invalid_parameter_names_field_value_and_allowed(name: str, value: str, says: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        parse({**GOOD, name: value})
    assert name in str(exc.value) and says in str(exc.value) and repr(value) in str(exc.value)


def test_missing_required_and_unknown_parameters() -> None:
    bad = dict(GOOD)
    del bad["DockerComposeFileS3Key"]
    with pytest.raises(InvalidParameter, match="DockerComposeFileS3Key is required"):
        parse(bad)
    with pytest.raises(InvalidParameter, match=r"unknown parameter.*DockerComposeFile;"):
        parse({**GOOD, "DockerComposeFile": "x"})


def test_payloads_match_seed_003() -> None:
    ok = status.success("myS3Bucket", "production-docker-compose.yml", "123")
    assert ok == {
        "status": "success",
        "GreengrassDockerApplicationDeploymentStatus": "Successfully triggered docker-compose up",
        "S3Bucket": "myS3Bucket",
        "ComposeFileName": "production-docker-compose.yml",
        "ComposeFileVersion": "123",
    }
    assert status.conformance_problems(ok) == []
    fail = status.failure("InvalidParameter", "description of error")
    assert list(fail) == ["status", "error_message", "error"] and status.conformance_problems(fail) == []


def test_conformance_problems_name_what_is_wrong() -> None:
    assert (
        "fields missing from the fail payload: error"
        in status.conformance_problems({"status": "fail", "error_message": "x"})[0]
    )
    assert any(
        "not one of" in p
        for p in status.conformance_problems({"status": "fail", "error_message": "x", "error": "Oops"})
    )
    extra = status.conformance_problems({**status.success("b", "k", "1"), "note": "x"})
    assert extra == ["fields not in seed 003's success payload: note"]
    wrong = status.conformance_problems(status.success("b", "k", "1"), expect={"S3Bucket": "other"})
    assert wrong == ["S3Bucket is 'b', expected 'other'"]


def test_compose_store_serves_versions_over_tls_and_goes_offline() -> None:
    store = ComposeStore()
    try:
        v1 = store.put("bucket", "app.yml", b"one")
        v2 = store.put("bucket", "app.yml", b"two")
        store.start()
        assert fetch(store.url("bucket", "app.yml"), store.ca_pem) == b"two"
        assert fetch(store.url("bucket", "app.yml", v1), store.ca_pem) == b"one"
        assert fetch(store.url("bucket", "app.yml", v2), store.ca_pem) == b"two"
        with pytest.raises(FetchError, match="HTTP 404"):
            fetch(store.url("bucket", "other.yml"), store.ca_pem)
        other = ComposeStore()
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(store.url("bucket", "app.yml"), other.ca_pem)  # only the store's own CA is trusted
        other.close()
        port = store.port
        store.stop()
        with pytest.raises(FetchError, match="cannot reach the compose file store"):
            fetch(store.url("bucket", "app.yml"), store.ca_pem, timeout=5)
        store.start()
        assert store.port == port and fetch(store.url("bucket", "app.yml"), store.ca_pem) == b"two"
    finally:
        store.close()


def test_unknown_fault_is_an_input_error_and_a_usage_error() -> None:
    assert check_faults(["wrong_prefix"]) == {"wrong_prefix"}
    with pytest.raises(InputError, match="allowed: " + ", ".join(FAULTS)):
        check_faults(["no_such_fault"])
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "scenarios" / "docker"),
            "-p",
            "no:cacheprovider",
            "--docker-fault",
            "no_such_fault",
            "--collect-only",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
    assert res.returncode == 4, res.stdout + res.stderr
    assert "unknown docker connector fault(s) no_such_fault; allowed:" in res.stderr
    assert "Traceback" not in res.stderr
