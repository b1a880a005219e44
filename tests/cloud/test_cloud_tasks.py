"""Core and device tasks: batched, asynchronous, per-item and overall taskStatus, deletes, validation."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from harness.cloud.api import Cloud
from harness.cloud.ca import CertInfo, cert_to_pem, load_certificate
from harness.errors import InputError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "provisioning"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_device_task_200_devices_with_summary_counts(tmp_path: Path) -> None:
    with Cloud(tmp_path / "state", workers=2) as cloud:  # worker processes, like the 10,000-device benchmark
        cloud.provision_core("Core", ["127.0.0.1:8883"])
        task = cloud.provision_devices("Core", 200, "dev-", batch_size=32)
        assert task["taskStatus"] == "Success"
        assert task["summary"] == {"total": 200, "success": 200, "failure": 0, "waiting": 0, "inProgress": 0}
        assert (task["batchesTotal"], task["batchesComplete"]) == (7, 7)
        assert len(cloud.devices("Core")) == 200 and cloud.registry.count_things("device") == 200
        assert cloud.check().ok and not cloud.check().orphans
        full = cloud.task(task["id"])
        assert len(full["devices"]) == 200 and {d["taskStatus"] for d in full["devices"]} == {"Success"}
        assert full["coreName"] == "Core" and full["type"] == "Create"


def test_keys_are_0600_and_certificates_chain(cloud: Cloud) -> None:
    cloud.provision_core("Core", ["127.0.0.1:8883"], key_type="rsa")
    body = json.loads((FIXTURES / "device-task.json").read_text())
    task = cloud.wait_task(cloud.submit_device_task("Core", body))
    assert task["taskStatus"] == "Success", task
    root = load_certificate(cloud.root_ca_path.read_bytes())
    for name, key_marker in (("fixture-device-0", "EC"), ("fixture-device-1", "RSA"), ("Core", "RSA")):
        files = cloud.device_files(name)
        assert _mode(files.key_path) == 0o600
        cert = load_certificate(files.cert_path.read_bytes())
        cert.verify_directly_issued_by(root)
        assert cert.subject.rfc4514_string() == f"CN={name}" + (",C=US" if name != "Core" else "")
        assert key_marker in type(cert.public_key()).__name__.upper()
    for path in (cloud.root_ca_path.with_suffix(".key"), cloud.core_ca("Core").key_path):
        assert _mode(path) == 0o600
    assert _mode(cloud.layout.root) == 0o700


def test_core_task_from_seed_shaped_fixture(cloud: Cloud) -> None:
    task = cloud.wait_task(cloud.submit_core_task(FIXTURES / "core-task.json"))
    assert task["taskStatus"] == "Success" and task["coreVersion"] == "2.5.0"
    assert [c["name"] for c in task["cores"]] == ["FixtureCore"]
    core = cloud.core("FixtureCore")
    assert core["device"] == {"installedComponents": [], "effectiveDeployments": [], "status": "UNKNOWN"}
    assert core["template"]["desired"] == {"name": "None", "version": 0}
    config = Path(core["artifacts"]["config"]["path"]).read_text()
    assert '"thingName": "FixtureCore"' in config
    policies = cloud.registry.policies_of_certificate(cloud.certificate_ids("FixtureCore")[0])
    assert policies == ["CDFGreengrass2CorePolicy", "myTokenExchangeRoleAliasPolicy"]


def test_per_item_failures_make_the_task_fail(cloud: Cloud) -> None:
    cloud.provision_core("Core")
    first = cloud.provision_devices("Core", 3, "d-")
    assert first["taskStatus"] == "Success"
    second = cloud.provision_devices("Core", 5, "d-")  # d-0000..d-0002 exist already
    assert second["taskStatus"] == "Failure" and second["statusMessage"] == "3 of 5 items failed"
    assert second["summary"]["success"] == 2 and second["summary"]["failure"] == 3
    items = {d["name"]: d for d in cloud.task(second["id"])["devices"]}
    assert items["d-0000"]["statusMessage"] == "thing 'd-0000' already exists"
    assert items["d-0004"]["taskStatus"] == "Success"


def test_device_brings_own_certificate(cloud: Cloud) -> None:
    cloud.provision_core("Core")
    cloud.put_provisioning_template(FIXTURES / "client-device-own-certificate.json", name="own-cert")
    _, cert = cloud.ctx.root_ca.issue_key_and_cert(
        CertInfo("byo").subject(), key_type="ec", days=1, usage="client"
    )
    body = {
        "type": "Create",
        "devices": [
            {
                "name": "byo",
                "provisioningTemplate": "own-cert",
                "provisioningParameters": {"CertificatePem": cert_to_pem(cert).decode(), "Site": "field"},
            }
        ],
    }
    task = cloud.wait_task(cloud.submit_device_task("Core", body))
    assert task["taskStatus"] == "Success", task
    assert cloud.registry.groups_of("byo") == ["site-field"]
    assert cloud.registry.thing("byo").attributes == {"site": "field"}  # type: ignore[union-attr]
    assert cloud.registry.policy("BringYourOwnCertPolicy").format == "iot"  # type: ignore[union-attr]
    assert cloud.check().ok  # a certificate without a key file here is fine when the device holds the key


def test_delete_devices_and_cores(cloud: Cloud) -> None:
    cloud.provision_core("Core")
    cloud.provision_devices("Core", 4, "d-")
    deleted = cloud.delete_devices("Core", ["d-0000", "d-0001", "nope"])
    assert deleted["taskStatus"] == "Failure" and deleted["summary"]["success"] == 2
    assert not cloud.layout.thing_dir("d-0000").exists() and cloud.registry.thing("d-0000") is None
    assert cloud.devices("Core") == ["d-0002", "d-0003"]
    task = cloud.delete_core("Core", deprovision_core=True, deprovision_devices=True)
    assert task["taskStatus"] == "Success" and task["options"] == {
        "deprovisionCores": True,
        "deprovisionClientDevices": True,
    }
    assert cloud.registry.count_things() == 0 and cloud.registry.certificates() == []
    assert not cloud.layout.core_dir("Core").exists()
    report = cloud.check()
    assert report.ok and not report.orphans


def test_requests_are_validated_before_anything_is_stored(cloud: Cloud) -> None:
    cloud.provision_core("Core")
    devices = [{"name": f"v-{i}"} for i in range(5)]
    devices[3]["cdfProvisioningParameters"] = {"keyType": "dsa"}  # type: ignore[assignment]
    with pytest.raises(
        InputError,
        match=r"devices\[3\]\.cdfProvisioningParameters\.keyType: unknown value 'dsa'; "
        r"allowed values: ec, rsa",
    ):
        cloud.submit_device_task("Core", {"type": "Create", "devices": devices})
    with pytest.raises(InputError, match=r"devices\[1\]\.name: duplicate name 'a'"):
        cloud.submit_device_task("Core", {"type": "Create", "devices": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(InputError, match=r"type: unknown value 'Update'; allowed values: Create, Delete"):
        cloud.submit_device_task("Core", {"type": "Update", "devices": [{"name": "a"}]})
    with pytest.raises(
        InputError, match=r"devices\[0\]\.provisioningTemplate: no provisioning template named 'x'"
    ):
        cloud.submit_device_task(
            "Core", {"type": "Create", "devices": [{"name": "a", "provisioningTemplate": "x"}]}
        )
    with pytest.raises(InputError, match=r"cores\[0\]\.connectivity\[0\]\.PortNumber: must be at most 65535"):
        cloud.submit_core_task(
            {
                "type": "Create",
                "cores": [
                    {"name": "c2", "connectivity": [{"HostAddress": "127.0.0.1", "PortNumber": 70000}]}
                ],
            }
        )
    with pytest.raises(InputError, match=r"certInfo\.country: expected a two-letter country code"):
        cloud.submit_device_task(
            "Core",
            {
                "type": "Create",
                "devices": [{"name": "a", "cdfProvisioningParameters": {"certInfo": {"country": "USA"}}}],
            },
        )
    bad = FIXTURES / "bad-resource-type.json"
    with pytest.raises(InputError, match=str(bad).replace(".", r"\.") + r": Resources\.thing\.Type"):
        cloud.put_provisioning_template(bad)
    assert cloud.registry.tasks(kind="device") == []
    # the seed's example spells the device-task type field "types"
    task = cloud.wait_task(cloud.submit_device_task("Core", {"types": "Create", "devices": [{"name": "t"}]}))
    assert task["taskStatus"] == "Success"


def test_connectivity_and_server_certificate(cloud: Cloud) -> None:
    cloud.provision_core("Core", ["127.0.0.1:8883", "[::1]:8883"])
    assert cloud.broker_sans("Core") == ["127.0.0.1", "::1", "localhost"]
    cert_path, key_path = cloud.issue_server_cert("Core", ["localhost", "127.0.0.1"], days=7)
    assert _mode(key_path) == 0o600
    cert = load_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(load_certificate(cloud.core_ca("Core").pem))
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7  # 7 days + 1 h clock-skew margin
    cloud.set_connectivity("Core", [{"HostAddress": "localhost", "PortNumber": 8884, "Metadata": "m"}])
    assert cloud.connectivity("Core") == [
        {"Id": "localhost_8884", "HostAddress": "localhost", "PortNumber": 8884, "Metadata": "m"}
    ]
    with pytest.raises(InputError, match=r"connectivity\[0\]: expected HOST:PORT"):
        cloud.set_connectivity("Core", ["localhost"])


def test_close_mid_task_then_resume_in_a_new_cloud(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Cloud(state, workers=1) as cloud:
        cloud.provision_core("Core")
        task_id = cloud.provision_devices("Core", 400, "r-", batch_size=10, wait=False)["id"]
        deadline = time.monotonic() + 60
        while (
            cloud.task(task_id, include_items=False)["summary"]["success"] < 20
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
    # closed part-way: the task stays InProgress and the registry consistent
    with Cloud(state, workers=1) as cloud:
        view = cloud.task(task_id, include_items=False)
        assert view["taskStatus"] in ("InProgress", "Success") and view["summary"]["success"] >= 20
        assert cloud.check().ok
        if view["taskStatus"] == "InProgress":
            assert cloud.resume_tasks() == [task_id]
        final = cloud.wait_task(task_id, 120, include_items=False)
        assert final["taskStatus"] == "Success" and final["summary"]["success"] == 400
        assert final["batchesComplete"] == 40 and len(cloud.devices("Core")) == 400
