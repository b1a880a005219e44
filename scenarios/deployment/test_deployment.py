"""Deployment scenarios C1-C4: components on the core, deployed locally with greengrass-cli.

Every check goes through the CLI (``deployment create/status``, ``component list``) and the core's own
logs (``logs/greengrass.log`` for state transitions, ``logs/<Component>.log`` for output), so the same
scenarios run against the reference nucleus or a real Greengrass V2 core. The components are in
``fixtures/components`` (recipes, YAML and JSON, and artifacts).
"""

from __future__ import annotations

import time

import pytest

from harness.core.nucleus import logparse
from harness.core.nucleus.driver import NucleusDriver, NucleusTimeout
from harness.paths import FIXTURES_DIR
from harness.profiles import DeviceProfile

RECIPES = FIXTURES_DIR / "components" / "recipes"
ARTIFACTS = FIXTURES_DIR / "components" / "artifacts"
HELLO, LIB, APP, FLAKY = "com.example.HelloWorld", "com.example.Lib", "com.example.App", "com.example.Flaky"
SLOW = {"install": "com.example.SlowInstall", "startup": "com.example.SlowStartup"}
#: The Timeout of the slow steps in their recipes, and the state whose step it is.
STEP_TIMEOUT_S = 2.0
STEP_STATE = {"install": "NEW", "startup": "STARTING"}
#: A deployment of the fixture components; an emulated board starts every python3 in about a second.
DEPLOY_TIMEOUT_S = 90.0
#: Three failed runs take well under a second natively and about two seconds under qemu-user.
BROKEN_TIMEOUT_S = 12.0
#: How long BROKEN is watched to make sure nothing restarts it before a new deployment.
BROKEN_HOLD_S = 1.0
#: How late after its Timeout a step may be marked ERRORED (planning, polling and emulation slack).
ERRORED_SLACK_S = 5.0
READY = ("RUNNING", "FINISHED")


def _state(nucleus: NucleusDriver, name: str) -> tuple[str, str]:
    return nucleus.components().get(name, ("absent", "absent"))


def _output(nucleus: NucleusDriver, name: str) -> list[str]:
    return logparse.output_lines(nucleus.component_log(name))


@pytest.mark.requirement(
    "A deployed component (recipe + artifact) reaches RUNNING or FINISHED within the timeout and its log "
    "shows its output",
    source="scenarios.md C1; core-behaviour.md Components and deployments (V2)",
)
def test_c1_deploy_component(nucleus: NucleusDriver, profile: DeviceProfile) -> None:
    info = nucleus.deploy_and_wait(
        DEPLOY_TIMEOUT_S, recipe_dir=RECIPES, artifact_dir=ARTIFACTS, merge={HELLO: "1.0.0"}
    )
    assert info.succeeded, f"the deployment of {HELLO} 1.0.0 did not succeed: {info.summary()}"
    version, state = _state(nucleus, HELLO)
    assert (version, state in READY) == ("1.0.0", True), (
        f"{HELLO} is {version} {state} after a successful deployment, not 1.0.0 RUNNING/FINISHED"
    )
    out = _output(nucleus, HELLO)
    greeting = [line for line in out if "Hello, world! from com.example.HelloWorld 1.0.0" in line]
    assert greeting, f"the log of {HELLO} does not show its output; logged lines: {out[-5:]}"
    assert greeting[-1].endswith(f" on {profile.arch}"), (
        f"{HELLO} did not run as {profile.arch} code: it printed {greeting[-1]!r}"
    )


@pytest.mark.requirement("Upgrading a component deploys and runs the new version", source="scenarios.md C2")
def test_c2_upgrade_runs_new_version(nucleus: NucleusDriver) -> None:
    first = nucleus.deploy_and_wait(
        DEPLOY_TIMEOUT_S, recipe_dir=RECIPES, artifact_dir=ARTIFACTS, merge={HELLO: "1.0.0"}
    )
    assert first.succeeded, f"the deployment of {HELLO} 1.0.0 did not succeed: {first.summary()}"
    upgrade = nucleus.deploy_and_wait(
        DEPLOY_TIMEOUT_S, recipe_dir=RECIPES, artifact_dir=ARTIFACTS, merge={HELLO: "1.1.0"}
    )
    assert upgrade.succeeded, f"the upgrade of {HELLO} to 1.1.0 did not succeed: {upgrade.summary()}"
    version, state = _state(nucleus, HELLO)
    assert version == "1.1.0" and state in READY, f"after the upgrade {HELLO} is {version} {state}"
    out = _output(nucleus, HELLO)
    assert any("from com.example.HelloWorld 1.1.0" in line for line in out), (
        f"the new version of {HELLO} did not run; last lines of its log: {out[-5:]}"
    )


@pytest.mark.requirement(
    "When a dependency is updated, its (HARD) dependents restart", source="scenarios.md C2; seed 000"
)
def test_c2_dependency_update_restarts_dependents(nucleus: NucleusDriver) -> None:
    first = nucleus.deploy_and_wait(DEPLOY_TIMEOUT_S, recipe_dir=RECIPES, merge={LIB: "1.0.0", APP: "1.0.0"})
    assert first.succeeded, (
        f"the deployment of {LIB} 1.0.0 and {APP} 1.0.0 did not succeed: {first.summary()}"
    )
    assert _state(nucleus, APP)[1] == "RUNNING", f"{APP} is not RUNNING: {_state(nucleus, APP)}"
    starts_before = sum("App started" in line for line in _output(nucleus, APP))
    update = nucleus.deploy_and_wait(DEPLOY_TIMEOUT_S, recipe_dir=RECIPES, merge={LIB: "1.1.0"})
    assert update.succeeded, f"the update of {LIB} to 1.1.0 did not succeed: {update.summary()}"
    comps = nucleus.components()
    assert comps.get(LIB) == ("1.1.0", "RUNNING"), f"after the update {LIB} is {comps.get(LIB)}"
    assert comps.get(APP, ("", ""))[1] == "RUNNING", f"after the update {APP} is {comps.get(APP)}"
    starts_after = sum("App started" in line for line in _output(nucleus, APP))
    assert starts_after > starts_before, (
        f"dependent {APP} was not restarted when its HARD dependency {LIB} was updated to 1.1.0 "
        f"({starts_before} start(s) before the update, {starts_after} after)"
    )


@pytest.mark.requirement(
    "A component whose run step fails three times in a row ends BROKEN and stays BROKEN; a new deployment "
    "clears it",
    source="scenarios.md C3; core-behaviour.md (three ERRORED in a row -> BROKEN)",
)
def test_c3_three_errors_broken_until_new_deployment(nucleus: NucleusDriver) -> None:
    deployment = nucleus.deploy(recipe_dir=RECIPES, merge={FLAKY: "1.0.0"})
    try:
        nucleus.wait_state(FLAKY, {"BROKEN"}, BROKEN_TIMEOUT_S)
    except NucleusTimeout:
        attempts = sum("attempt" in line for line in _output(nucleus, FLAKY))
        raise AssertionError(
            f"{FLAKY} never went BROKEN: its run step failed {attempts} times within {BROKEN_TIMEOUT_S:g} s "
            f"(three ERRORED in a row must make it BROKEN); state {_state(nucleus, FLAKY)[1]}"
        ) from None
    attempts = sum("attempt" in line for line in _output(nucleus, FLAKY))
    assert attempts == 3, f"{FLAKY} went BROKEN after {attempts} failed run(s), not after three in a row"
    info = nucleus.wait_deployment(deployment, DEPLOY_TIMEOUT_S)
    assert info.status == "FAILED", f"the deployment of a component that went BROKEN is {info.summary()}"
    time.sleep(BROKEN_HOLD_S)
    again = sum("attempt" in line for line in _output(nucleus, FLAKY))
    assert _state(nucleus, FLAKY)[1] == "BROKEN" and again == attempts, (
        f"{FLAKY} did not stay BROKEN without a new deployment: {_state(nucleus, FLAKY)[1]}, "
        f"{again - attempts} more run(s)"
    )
    fixed = nucleus.deploy_and_wait(DEPLOY_TIMEOUT_S, update_config={FLAKY: {"MERGE": {"ExitCode": 0}}})
    assert fixed.succeeded, f"the new deployment of {FLAKY} (ExitCode 0) did not succeed: {fixed.summary()}"
    assert _state(nucleus, FLAKY)[1] in READY, (
        f"a new deployment did not clear BROKEN: {FLAKY} is {_state(nucleus, FLAKY)[1]}"
    )


@pytest.mark.requirement(
    "A step that outlives its timeout (install, startup) marks the component ERRORED",
    source="scenarios.md C4; core-behaviour.md step timeouts",
)
@pytest.mark.parametrize("step", ["install", "startup"])
def test_c4_step_timeout_marks_errored(nucleus: NucleusDriver, step: str) -> None:
    name, origin = SLOW[step], STEP_STATE[step]
    nucleus.deploy(recipe_dir=RECIPES, merge={name: "1.0.0"})
    deadline = time.monotonic() + STEP_TIMEOUT_S + ERRORED_SLACK_S
    while True:
        core_log = nucleus.core_log()
        errored = [
            t
            for t in logparse.transitions(core_log, name)
            if t.old == origin and t.new in ("ERRORED", "BROKEN")
        ]
        if errored or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    seen = " -> ".join(t.new for t in logparse.transitions(core_log, name)) or "none"
    assert errored, (
        f"{name}: the {step} step outlived its {STEP_TIMEOUT_S:g} s Timeout and was not marked ERRORED "
        f"within {STEP_TIMEOUT_S + ERRORED_SLACK_S:g} s (transitions: {seen})"
    )
    starts = logparse.step_starts(nucleus.component_log(name), step)
    assert starts, f"{name}: no start of its {step} step in its log"
    elapsed = errored[0].ts - starts[0].ts
    assert STEP_TIMEOUT_S - 0.5 <= elapsed <= STEP_TIMEOUT_S + ERRORED_SLACK_S, (
        f"{name}: marked ERRORED {elapsed:.1f} s after its {step} step started; its Timeout is "
        f"{STEP_TIMEOUT_S:g} s"
    )
