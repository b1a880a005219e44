"""Component templates with versions, deployment tasks and the fleet summary (seed 001)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cloud.api import Cloud
from harness.errors import InputError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "provisioning"


def test_template_versions_deployments_and_fleet_summary(cloud: Cloud) -> None:
    for name in ("c1", "c2", "c3"):
        cloud.provision_core(name)
    v1 = cloud.create_component_template(FIXTURES / "component-template.json")
    assert (v1["name"], v1["version"], v1["components"]) == (
        "base-cli",
        1,
        [{"key": "aws.greengrass.Cli", "version": "2.5.0"}],
    )
    v2 = cloud.create_component_template("base-cli", [{"key": "aws.greengrass.Cli", "version": "2.6.0"}])
    assert (
        v2["version"] == 2 and cloud.component_template("base-cli", 1)["components"][0]["version"] == "2.5.0"
    )

    task = cloud.deploy("base-cli", 1, cores=["c1", "c2", "c3"])
    assert task["taskStatus"] == "Success" and task["template"] == {"name": "base-cli", "version": 1}
    assert [d["coreName"] for d in task["deployments"]] == ["c1", "c2", "c3"]
    cloud.report_deployment("c1", "base-cli", 1, "SUCCEEDED")
    cloud.report_deployment("c2", "base-cli", 1, "FAILED")
    summary = cloud.fleet_summary()["templates"]["base-cli"]
    assert summary["latestVersion"] == 2
    assert summary["versions"]["1"] == {
        "desiredInUse": 3,
        "reportedInUse": 1,
        "lastDeploymentSuccess": 1,
        "lastDeploymentFailed": 1,
        "lastDeploymentInProgress": 1,
    }
    assert summary["versions"]["2"] == {
        "desiredInUse": 0,
        "reportedInUse": 0,
        "lastDeploymentSuccess": 0,
        "lastDeploymentFailed": 0,
        "lastDeploymentInProgress": 0,
    }
    # c1 moves on to version 2 (latest when the version is omitted); its reported version stays 1 until done
    cloud.deploy("base-cli", cores=["c1"])
    summary = cloud.fleet_summary()["templates"]["base-cli"]["versions"]
    assert (summary["1"]["desiredInUse"], summary["1"]["reportedInUse"]) == (2, 1)
    assert (summary["2"]["desiredInUse"], summary["2"]["lastDeploymentInProgress"]) == (1, 1)
    cloud.report_deployment("c1", "base-cli", 2, "SUCCEEDED")
    core = cloud.core("c1")
    assert core["template"] == {
        "desired": {"name": "base-cli", "version": 2},
        "reported": {"name": "base-cli", "version": 2, "deploymentStatus": "SUCCEEDED"},
    }


def test_deployer_hook_and_deployment_task_file(tmp_path: Path) -> None:
    calls: list[tuple[str, str, int]] = []

    def deployer(core: str, name: str, version: int, components: list[dict[str, object]]) -> str:
        calls.append((core, name, version))
        return "SUCCEEDED"

    with Cloud(tmp_path / "s", workers=1, deployer=deployer) as cloud:
        cloud.submit_core_task(FIXTURES / "core-task.json")
        cloud.runner.wait(cloud.tasks()[0]["id"], 60)
        cloud.create_component_template(FIXTURES / "component-template.json")
        task = cloud.wait_task(cloud.submit_deployment_task(FIXTURES / "deployment-task.json"))
        assert task["taskStatus"] == "Success" and calls == [("FixtureCore", "base-cli", 1)]
        assert cloud.fleet_summary()["templates"]["base-cli"]["versions"]["1"]["reportedInUse"] == 1


def test_component_template_and_deployment_errors(cloud: Cloud) -> None:
    with pytest.raises(InputError, match=r"name: invalid name 'my:template'.*no colon"):
        cloud.create_component_template("my:template", [{"key": "a", "version": "1.0.0"}])
    with pytest.raises(InputError, match=r"components\[0\]\.version: expected a semantic version"):
        cloud.create_component_template("t", [{"key": "a", "version": "latest"}])
    with pytest.raises(InputError, match=r"components\[1\]\.key: component 'a' is listed twice"):
        cloud.create_component_template(
            "t", [{"key": "a", "version": "1.0.0"}, {"key": "a", "version": "1.0.1"}]
        )
    cloud.create_component_template("t", [{"key": "a", "version": "1.0.0"}])
    with pytest.raises(
        InputError, match=r"template: no component template 't' version 5; allowed values: t@1"
    ):
        cloud.deploy("t", 5, cores=["x"])
    with pytest.raises(InputError, match=r"targets\.thingNames\[0\]: 'x' is not a provisioned core"):
        cloud.deploy("t", cores=["x"])
    with pytest.raises(InputError, match=r"status: unknown value 'DONE'"):
        cloud.report_deployment("x", "t", 1, "DONE")
