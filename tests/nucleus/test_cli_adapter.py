"""greengrass-cli command lines and output parsing, on recorded output of real cores (no device needed).

The reference CLI's own output must parse to the same records, which is what makes the reference nucleus
and a real core interchangeable behind ``NucleusDriver``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.nucleus import logparse
from harness.core.nucleus.cli_adapter import (
    CliOutputError,
    GreengrassV2Adapter,
    ReferenceNucleusAdapter,
    parse_components,
    parse_create,
    parse_deployments,
    parse_status,
)
from harness.core.nucleus.device import cli as reference_cli
from harness.core.nucleus.driver import NucleusDriver, NucleusTimeout
from harness.errors import TargetError
from harness.targets.fake import FakeTarget, reply

DATA = Path(__file__).with_name("data")
DEP_OK = "44d89f46-1a29-4044-ad89-5151213dfcbc"
DEP_FAILED = "7a2f3c1e-96b0-4f3e-8f1a-0c1d2e3f4a5b"


def data(name: str) -> str:
    return (DATA / name).read_text()


def test_real_core_command_lines() -> None:
    gg = GreengrassV2Adapter()
    argv = gg.deployment_create(
        "/tmp/stage/recipes",
        "/tmp/stage/artifacts",
        {"com.example.HelloWorld": "1.0.0", "com.example.Lib": "1.1.0"},
        ["com.example.Old"],
        {"com.example.HelloWorld": {"MERGE": {"Message": "x y"}}},
    )
    assert argv == [
        "sudo",
        "-n",
        "/greengrass/v2/bin/greengrass-cli",
        "deployment",
        "create",
        "--recipeDir",
        "/tmp/stage/recipes",
        "--artifactDir",
        "/tmp/stage/artifacts",
        "--merge",
        "com.example.HelloWorld=1.0.0",
        "--merge",
        "com.example.Lib=1.1.0",
        "--remove",
        "com.example.Old",
        "--update-config",
        '{"com.example.HelloWorld":{"MERGE":{"Message":"x y"}}}',
    ]
    assert gg.deployment_status("abc") == [
        "sudo",
        "-n",
        "/greengrass/v2/bin/greengrass-cli",
        "deployment",
        "status",
        "--deploymentId",
        "abc",
    ]
    assert gg.component_list()[-2:] == ["component", "list"]
    assert gg.start_argv() == ["sudo", "-n", "systemctl", "start", "greengrass.service"]
    assert gg.running_argv() == ["sudo", "-n", "systemctl", "is-active", "--quiet", "greengrass.service"]
    assert gg.read_argv("/greengrass/v2/logs/greengrass.log") == [
        "sudo",
        "-n",
        "cat",
        "/greengrass/v2/logs/greengrass.log",
    ]
    assert GreengrassV2Adapter(root="/opt/gg", sudo=False).cli() == ["/opt/gg/bin/greengrass-cli"]


def test_reference_command_lines() -> None:
    ref = ReferenceNucleusAdapter(root="/greengrass", faults=("broken_rule_off",))
    assert ref.cli() == ["/greengrass/bin/greengrass-cli"]
    assert ref.start_argv()[-2:] == ["--fault", "broken_rule_off"]
    assert "--daemon" in ref.start_argv() and "--stop" in ref.stop_argv(5)
    cut = {"GG_CUTPOINT": "launch.new_linked@2", "GG_CUTPOINT_MARKER": "/tmp/cut marker"}
    argv = ref.start_argv(cut)
    assert argv[:3] == ["env", "GG_CUTPOINT=launch.new_linked@2", "GG_CUTPOINT_MARKER=/tmp/cut marker"]
    assert argv[3:] == ref.start_argv()
    with pytest.raises(TargetError, match="cannot reach a systemd unit"):
        GreengrassV2Adapter().start_argv(cut)


def test_parse_create() -> None:
    assert parse_create(data("deployment-create.txt")) == DEP_OK
    with pytest.raises(CliOutputError, match="printed no deployment id"):
        parse_create("Exception in thread main: com.aws.greengrass.ipc.IPCClientNotAuthorizedError")


def test_parse_status_both_generations() -> None:
    old = parse_status(data("deployment-status-v2.0.txt"), DEP_OK)
    assert (old.status, old.terminal, old.succeeded, old.detailed_status) == ("SUCCEEDED", True, True, "")
    failed = parse_status(data("deployment-status-failed.txt"), DEP_FAILED)
    assert failed.status == "FAILED" and failed.terminal and not failed.succeeded
    assert failed.detailed_status == "FAILED_ROLLBACK_NOT_REQUESTED"
    assert failed.error_stack == ("DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN")
    assert failed.error_types == ("USER_COMPONENT_ERROR",)
    assert failed.failure_cause == "Service com.example.Flaky in broken state"
    assert failed.created == "11/23/23, 5:41 AM"
    with pytest.raises(CliOutputError, match="no status for other-id"):
        parse_status(data("deployment-status-failed.txt"), "other-id")


def test_parse_deployment_list_with_bracketed_lists() -> None:
    found = parse_deployments(data("deployment-list.txt"))
    assert [(d.id[:8], d.status) for d in found] == [
        ("44d89f46", "SUCCEEDED"),
        ("7a2f3c1e", "FAILED"),
        ("0b1c2d3e", "IN_PROGRESS"),
    ]
    assert found[1].error_stack == ("DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN")
    assert not found[2].terminal


@pytest.mark.parametrize("name", ["component-list-v2.0.txt", "component-list.txt"])
def test_parse_components_both_generations(name: str) -> None:
    comps = parse_components(data(name))
    nucleus = comps["aws.greengrass.Nucleus"]
    assert nucleus.state == "FINISHED" and nucleus.version.startswith("2.")
    assert isinstance(nucleus.configuration, dict) and "runWithDefault" in nucleus.configuration
    assert comps["DeploymentService"].configuration is None


def test_parse_components_user_components() -> None:
    comps = parse_components(data("component-list.txt"))
    assert (comps["com.example.HelloWorld"].version, comps["com.example.HelloWorld"].state) == (
        "1.0.0",
        "FINISHED",
    )
    assert comps["com.example.Flaky"].state == "BROKEN"
    assert comps["com.example.Flaky"].configuration == {"ExitCode": 1.0}


def test_parse_components_rejects_a_block_without_state() -> None:
    with pytest.raises(CliOutputError, match="no Version or State"):
        parse_components("Component Name: x\n    Version: 1.0.0\n")


def test_reference_cli_output_parses_like_the_real_one() -> None:
    record = {
        "deploymentId": DEP_FAILED,
        "status": "FAILED",
        "createdOn": 1700718060.0,
        "detailedStatus": "FAILED_ROLLBACK_NOT_REQUESTED",
        "errorStack": ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
        "errorTypes": ["USER_COMPONENT_ERROR"],
        "failureCause": "Service com.example.Flaky in broken state",
    }
    ours = parse_status(reference_cli.format_deployment(record), DEP_FAILED)
    theirs = parse_status(data("deployment-status-failed.txt"), DEP_FAILED)
    assert (ours.status, ours.detailed_status, ours.error_stack, ours.error_types, ours.failure_cause) == (
        theirs.status,
        theirs.detailed_status,
        theirs.error_stack,
        theirs.error_types,
        theirs.failure_cause,
    )
    block = reference_cli.format_component(
        {
            "componentName": "com.example.Flaky",
            "version": "1.0.0",
            "state": "BROKEN",
            "configuration": {"ExitCode": 1.0},
        }
    )
    listing = "Components currently running in Greengrass:\n" + block
    assert parse_components(listing) == {
        "com.example.Flaky": parse_components(data("component-list.txt"))["com.example.Flaky"]
    }
    assert block.splitlines()[1:] == data("component-list.txt").splitlines()[14:17]


def test_logs_in_the_nucleus_format() -> None:
    moves = logparse.transitions(data("greengrass.log"), "com.example.Flaky")
    assert [(t.old, t.new) for t in moves] == [
        ("NEW", "INSTALLED"),
        ("INSTALLED", "STARTING"),
        ("STARTING", "RUNNING"),
        ("RUNNING", "ERRORED"),
        ("ERRORED", "STOPPING"),
        ("RUNNING", "BROKEN"),
    ]
    assert moves[1].ts - moves[0].ts == pytest.approx(0.001, abs=1e-6)
    log = data("com.example.HelloWorld.log")
    assert logparse.output_lines(log) == ["Hello, world! from com.example.HelloWorld 1.0.0 on aarch64"]
    assert logparse.output_lines(log, "stderr") == ["a warning"]
    assert len(logparse.step_starts(log, "run")) == 1 and not logparse.step_starts(log, "install")


def _fake_core(statuses: list[str]) -> tuple[FakeTarget, NucleusDriver]:
    """A fake board whose greengrass-cli answers with recorded output."""
    gg = GreengrassV2Adapter()
    queue = list(statuses)

    def handler(argv: list[str]) -> object:
        if argv[:3] != gg.cli():
            return None
        if argv[3:5] == ["deployment", "create"]:
            return reply(data("deployment-create.txt"))
        if argv[3:5] == ["deployment", "status"]:
            return reply(queue.pop(0) if len(queue) > 1 else queue[0])
        if argv[3:5] == ["component", "list"]:
            return reply(data("component-list.txt"))
        return None

    target = FakeTarget("board", handlers=[handler])  # type: ignore[list-item]
    return target, NucleusDriver(target, gg)


def test_driver_on_a_real_core_is_cli_only(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "com.example.HelloWorld-1.0.0.yaml").write_text(
        "RecipeFormatVersion: 2020-01-25\nComponentName: com.example.HelloWorld\nComponentVersion: '1.0.0'\n"
    )
    in_progress = data("deployment-status-v2.0.txt").replace("SUCCEEDED", "IN_PROGRESS")
    target, driver = _fake_core([in_progress, data("deployment-status-v2.0.txt")])
    dep = driver.deploy(recipe_dir=recipes, merge={"com.example.HelloWorld": "1.0.0"})
    assert dep == DEP_OK
    staged = [p for p in target.files if p.endswith("/recipes/com.example.HelloWorld-1.0.0.json")]
    assert staged, f"the recipe was not staged on the target: {sorted(target.files)}"
    recipe = json.loads(target.files[staged[0]])
    assert recipe["RecipeFormatVersion"] == "2020-01-25"  # a YAML date became the string the nucleus expects
    create = next(c for c in target.calls if c[3:5] == ["deployment", "create"])
    assert create[create.index("--recipeDir") + 1] == staged[0].rsplit("/", 1)[0]
    assert driver.wait_deployment(dep, 5).succeeded
    assert driver.components()["com.example.Flaky"] == ("1.0.0", "BROKEN")
    assert any(c[:2] == ["rm", "-rf"] for c in target.calls), "the staging directory was not removed"


def test_driver_timeout_says_what_it_saw() -> None:
    in_progress = data("deployment-status-v2.0.txt").replace("SUCCEEDED", "IN_PROGRESS")
    _, driver = _fake_core([in_progress])
    with pytest.raises(
        NucleusTimeout, match=f"waiting for deployment {DEP_OK} to finish; {DEP_OK}: IN_PROGRESS"
    ):
        driver.wait_deployment(DEP_OK, 0.3)
