"""The nucleus agent's lifecycle rules, run on the host through greengrass-cli (core-behaviour.md, V2).

Each test deploys small recipes written on the fly and checks states through ``component list`` and
transitions through ``greengrass.log``; seeded faults are shown to break exactly the rule they name.
"""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest
from nucleus_support import WAIT_S, MakeNucleus, write_recipe

from harness.core.nucleus import logparse
from harness.core.nucleus.driver import NucleusDriver

C = "com.example.Comp"


def moves(nucleus: NucleusDriver, name: str) -> list[tuple[str, str]]:
    return [(t.old, t.new) for t in nucleus.transitions(name)]


def output(nucleus: NucleusDriver, name: str) -> list[str]:
    return logparse.output_lines(nucleus.component_log(name))


def test_run_enters_running_at_once_and_finished_on_exit_zero(
    make_nucleus: MakeNucleus, tmp_path: Path
) -> None:
    nucleus = make_nucleus()
    write_recipe(tmp_path, C, lifecycle={"Install": "echo installing", "Run": "echo hello from run"})
    info = nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"})
    assert info.succeeded and info.detailed_status == "SUCCESSFUL", info.raw
    assert nucleus.components()[C] == ("1.0.0", "FINISHED")
    assert moves(nucleus, C) == [
        ("NEW", "INSTALLED"),
        ("INSTALLED", "STARTING"),
        ("STARTING", "RUNNING"),
        ("RUNNING", "FINISHED"),
    ]
    assert output(nucleus, C) == ["installing", "hello from run"]
    assert [e.fields["scriptName"] for e in logparse.step_starts(nucleus.component_log(C))] == [
        f"services.{C}.lifecycle.Install",
        f"services.{C}.lifecycle.Run",
    ]


def test_startup_stays_starting_until_it_exits_zero(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    write_recipe(tmp_path, C, lifecycle={"Startup": "sleep 1; (exec sleep 60) & echo started"})
    assert nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"}).succeeded
    assert nucleus.components()[C][1] == "RUNNING"  # the background process keeps it running
    t = nucleus.transitions(C)
    starting = next(x for x in t if x.new == "STARTING")
    running = next(x for x in t if x.new == "RUNNING")
    assert running.old == "STARTING" and running.ts - starting.ts >= 0.9


def test_three_errors_in_a_row_make_broken(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    write_recipe(tmp_path, C, lifecycle={"Run": "echo attempt; exit 3"})
    info = nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"})
    assert info.status == "FAILED" and info.failure_cause == f"Service {C} in broken state", info.raw
    assert "COMPONENT_BROKEN" in info.error_stack and info.detailed_status == "FAILED_ROLLBACK_NOT_REQUESTED"
    assert nucleus.components()[C][1] == "BROKEN"
    m = moves(nucleus, C)
    assert m.count(("RUNNING", "ERRORED")) == 2 and m[-1] == ("RUNNING", "BROKEN"), m
    assert output(nucleus, C).count("attempt") == 3
    assert {e.fields["statusCode"] for e in logparse.errors(nucleus.core_log(), C)} == {"RUN_ERRORED"}


def test_errors_count_per_state_and_reset_on_success(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    """Two failed installs, then two failed runs, then success: never three in a row from one state."""
    nucleus = make_nucleus()
    counter = "n=$(cat {f} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {f}; [ $n -ge 3 ] || exit 1"
    write_recipe(
        tmp_path,
        C,
        lifecycle={"Install": counter.format(f="installs"), "Run": counter.format(f="runs") + "; echo done"},
    )
    info = nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"})
    assert info.succeeded, info.raw
    m = moves(nucleus, C)
    assert (
        m.count(("NEW", "ERRORED")) == 2
        and m.count(("RUNNING", "ERRORED")) == 2
        and ("RUNNING", "FINISHED") in m
    )


def test_recover_runs_after_an_error(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    write_recipe(tmp_path, C, lifecycle={"Run": "exit 1", "Recover": "echo recovering"})
    nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"})
    assert output(nucleus, C).count("recovering") == 2  # after each ERRORED; the third error is BROKEN


def test_broken_rule_off_fault_never_breaks(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus("broken_rule_off")
    write_recipe(tmp_path, C, lifecycle={"Run": "echo attempt; sleep 0.1; exit 3"})
    nucleus.deploy(recipe_dir=tmp_path, merge={C: "1.0.0"})
    time.sleep(1.2)
    assert nucleus.components()[C][1] != "BROKEN"
    assert output(nucleus, C).count("attempt") > 3


def test_only_a_new_deployment_clears_broken(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    write_recipe(
        tmp_path, C, lifecycle={"Run": "echo attempt; exit {configuration:/Code}"}, config={"Code": 1}
    )
    assert not nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"}).succeeded
    time.sleep(0.5)
    assert nucleus.components()[C][1] == "BROKEN" and output(nucleus, C).count("attempt") == 3
    info = nucleus.deploy_and_wait(WAIT_S, update_config={C: {"MERGE": {"Code": 0}}})
    assert info.succeeded, info.raw
    assert nucleus.components()[C][1] == "FINISHED"
    assert ("BROKEN", "NEW") in moves(nucleus, C)


def test_same_deployment_of_a_broken_component_reinstalls_it(
    make_nucleus: MakeNucleus, tmp_path: Path
) -> None:
    nucleus = make_nucleus()
    write_recipe(tmp_path, C, lifecycle={"Run": "echo attempt; exit 1"})
    nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"})
    nucleus.deploy_and_wait(WAIT_S, merge={C: "1.0.0"})
    assert output(nucleus, C).count("attempt") == 6, "a new deployment must give a BROKEN component new tries"


@pytest.mark.parametrize(
    ("where", "step", "origin", "code"),
    [
        ("setting", "Install", "NEW", "INSTALL_TIMEOUT"),
        ("recipe", "Install", "NEW", "INSTALL_TIMEOUT"),
        ("recipe", "Startup", "STARTING", "STARTUP_TIMEOUT"),
    ],
)
def test_step_timeouts_mark_errored(
    make_nucleus: MakeNucleus, tmp_path: Path, where: str, step: str, origin: str, code: str
) -> None:
    """The agent's setting is the default; a recipe step's own Timeout wins over it."""
    if where == "setting":
        nucleus = make_nucleus(install_timeout=0.5)
        script: object = "sleep 30"
    else:
        nucleus = make_nucleus(install_timeout=60.0, startup_timeout=60.0)
        script = {"Script": "sleep 30", "Timeout": 0.5}
    write_recipe(tmp_path, C, lifecycle={step: script})
    start = time.monotonic()
    info = nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"})
    assert info.status == "FAILED" and time.monotonic() - start < 10, info.raw
    m = moves(nucleus, C)
    assert m.count((origin, "ERRORED")) == 2 and m[-1] == (origin, "BROKEN"), m
    assert {e.fields["statusCode"] for e in logparse.errors(nucleus.core_log(), C)} == {code}


def test_timeouts_ignored_fault_lets_a_step_overrun(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus("timeouts_ignored")
    write_recipe(
        tmp_path, C, lifecycle={"Install": {"Script": "sleep 1.5", "Timeout": 0.3}, "Run": "echo ran"}
    )
    info = nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"})
    assert info.succeeded and ("NEW", "ERRORED") not in moves(nucleus, C)


def test_shutdown_runs_and_processes_end_on_removal(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    marker = tmp_path / "still-running"
    write_recipe(
        tmp_path / "r",
        C,
        lifecycle={
            "Run": f"exec sh -c 'while true; do touch {marker}; sleep 0.1; done'",
            "Shutdown": "echo bye",
        },
    )
    assert nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path / "r", merge={C: "1.0.0"}).succeeded
    assert nucleus.deploy_and_wait(WAIT_S, remove=[C]).succeeded
    assert C not in nucleus.components()
    assert "bye" in output(nucleus, C)
    marker.unlink()
    time.sleep(0.5)
    assert not marker.exists(), "the run process survived the removal of its component"


def test_shutdown_timeout_does_not_hang_removal(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus(shutdown_timeout=0.5)
    write_recipe(tmp_path, C, lifecycle={"Run": "exec sleep 60", "Shutdown": "sleep 30"})
    assert nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"}).succeeded
    start = time.monotonic()
    assert nucleus.deploy_and_wait(WAIT_S, remove=[C]).succeeded
    assert time.monotonic() - start < 6
    assert any(e.fields["statusCode"] == "SHUTDOWN_TIMEOUT" for e in logparse.errors(nucleus.core_log(), C))


def _deploy_lib_app(nucleus: NucleusDriver, tmp_path: Path) -> Path:
    r = tmp_path / "recipes"
    for v in ("1.0.0", "1.1.0"):
        write_recipe(r, "Lib", v, {"Startup": f"sleep 0.3; (exec sleep 60) & echo lib {v}"})
    write_recipe(
        r,
        "App",
        lifecycle={"Run": "echo app start; exec sleep 60"},
        dependencies={"Lib": {"VersionRequirement": "^1.0.0"}},
    )
    soft = {"Lib": {"VersionRequirement": "^1.0.0", "DependencyType": "SOFT"}}
    write_recipe(r, "Soft", lifecycle={"Run": "echo soft start; exec sleep 60"}, dependencies=soft)
    info = nucleus.deploy_and_wait(
        WAIT_S, recipe_dir=r, merge={"Lib": "1.0.0", "App": "1.0.0", "Soft": "1.0.0"}
    )
    assert info.succeeded, info.raw
    return r


def test_dependents_start_after_their_dependency_and_hard_ones_restart(
    make_nucleus: MakeNucleus, tmp_path: Path
) -> None:
    nucleus = make_nucleus()
    r = _deploy_lib_app(nucleus, tmp_path)
    lib_running = next(t.ts for t in nucleus.transitions("Lib") if t.new == "RUNNING")
    app_starting = next(t.ts for t in nucleus.transitions("App") if t.new == "STARTING")
    assert app_starting >= lib_running, "App started before its dependency Lib was RUNNING"
    assert nucleus.deploy_and_wait(WAIT_S, recipe_dir=r, merge={"Lib": "1.1.0"}).succeeded
    assert output(nucleus, "App").count("app start") == 2, "the HARD dependent did not restart"
    assert output(nucleus, "Soft").count("soft start") == 1, "a SOFT dependent must not restart"
    assert nucleus.components()["Lib"] == ("1.1.0", "RUNNING")


def test_dependents_not_restarted_fault(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus("dependents_not_restarted")
    r = _deploy_lib_app(nucleus, tmp_path)
    assert nucleus.deploy_and_wait(WAIT_S, recipe_dir=r, merge={"Lib": "1.1.0"}).succeeded
    assert output(nucleus, "App").count("app start") == 1


def test_unsatisfiable_dependency_fails_without_change(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    r = _deploy_lib_app(nucleus, tmp_path)
    write_recipe(
        r, "Greedy", lifecycle={"Run": "true"}, dependencies={"Lib": {"VersionRequirement": ">=2.0.0"}}
    )
    info = nucleus.deploy_and_wait(WAIT_S, recipe_dir=r, merge={"Greedy": "1.0.0"})
    assert info.status == "FAILED" and info.detailed_status == "FAILED_NO_STATE_CHANGE", info.raw
    assert "Component Lib version constraints:" in info.failure_cause
    assert "Greedy-1.0.0 requires >=2.0.0" in info.failure_cause
    assert "Greedy" not in nucleus.components() and output(nucleus, "App").count("app start") == 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-version", "no local recipe for com.example.Comp-9.9.9"),
        ("no-platform", "has no manifest for this platform"),
        ("missing-artifact", "artifact s3://bucket/tool.sh of com.example.Comp-1.0.0 not found"),
        ("bad-digest", "digest does not match the recipe"),
        ("bad-recipe", "field 'ComponentVersion' must be MAJOR.MINOR.PATCH"),
        ("yaml-on-target", "YAML recipes are not read on the target"),
    ],
)
def test_bad_deployments_fail_with_their_cause(
    make_nucleus: MakeNucleus, tmp_path: Path, case: str, expected: str
) -> None:
    nucleus = make_nucleus()
    r, a = tmp_path / "recipes", tmp_path / "artifacts"
    (a / C / "1.0.0").mkdir(parents=True)
    (a / C / "1.0.0" / "tool.sh").write_text("echo tool\n")
    artifact: dict[str, object] = {"Uri": "s3://bucket/tool.sh"}
    merge = {C: "1.0.0"}
    if case == "missing-version":
        write_recipe(r, C, lifecycle={"Run": "true"})
        merge = {C: "9.9.9"}
    elif case == "no-platform":
        write_recipe(r, C, manifests=[{"Platform": {"os": "windows"}, "Lifecycle": {"Run": "true"}}])
    elif case == "missing-artifact":
        (a / C / "1.0.0" / "tool.sh").unlink()
    elif case == "bad-digest":
        artifact = {
            **artifact,
            "Digest": base64.b64encode(hashlib.sha256(b"other").digest()).decode(),
            "Algorithm": "SHA-256",
        }
    elif case == "bad-recipe":
        write_recipe(r, C, "1.0", lifecycle={"Run": "true"})
    if case in ("missing-artifact", "bad-digest"):
        write_recipe(
            r, C, manifests=[{"Lifecycle": {"Run": "sh {artifacts:path}/tool.sh"}, "Artifacts": [artifact]}]
        )
    if case == "yaml-on-target":
        r.mkdir()
        (r / f"{C}-1.0.0.yaml").write_text(f"RecipeFormatVersion: '2020-01-25'\nComponentName: {C}\n")
        argv = nucleus.cli.deployment_create(str(r), None, merge)  # the raw CLI, no host-side conversion
        res = nucleus.target.run(argv)
        assert res.ok, res.evidence()
        dep = res.stdout.split("Deployment Id: ")[1].strip()
    else:
        dep = nucleus.deploy(recipe_dir=r, artifact_dir=a, merge=merge)
    info = nucleus.wait_deployment(dep, WAIT_S)
    assert info.status == "FAILED" and info.detailed_status == "FAILED_NO_STATE_CHANGE", info.raw
    assert expected in info.failure_cause
    assert C not in nucleus.components()


def test_artifacts_recipe_variables_and_manifest_selection(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    r, a = tmp_path / "recipes", tmp_path / "artifacts"
    (a / C / "1.0.0").mkdir(parents=True)
    (a / C / "1.0.0" / "tool.sh").write_text("echo tool says $1\n")
    digest = base64.b64encode(hashlib.sha256(b"echo tool says $1\n").digest()).decode()
    run = (
        "sh {artifacts:path}/tool.sh {configuration:/Word}; "
        "echo work={work:path} thing={iot:thingName} $GREETING"
    )
    write_recipe(
        r,
        C,
        config={"Word": "hi", "Nested": {"Keep": True}},
        manifests=[
            {
                "Platform": {"os": "linux", "architecture": "/^nomatch$/"},
                "Lifecycle": {"Run": "echo wrong manifest"},
            },
            {
                "Platform": {"os": "*"},
                "Lifecycle": {"Setenv": {"GREETING": "from-setenv"}, "Run": run},
                "Artifacts": [
                    {"Uri": "s3://bucket/tool.sh", "Digest": digest, "Permission": {"Execute": "OWNER"}}
                ],
            },
        ],
    )
    assert nucleus.deploy_and_wait(WAIT_S, recipe_dir=r, artifact_dir=a, merge={C: "1.0.0"}).succeeded
    root = nucleus.cli.root
    assert output(nucleus, C) == ["tool says hi", f"work={root}/work/{C} thing= from-setenv"]
    info = nucleus.deploy_and_wait(WAIT_S, update_config={C: {"MERGE": {"Word": "yo"}}})
    assert info.succeeded and output(nucleus, C)[-2] == "tool says yo"
    details = nucleus.component_details()[C]
    assert details.configuration == {"Word": "yo", "Nested": {"Keep": True}}
    assert nucleus.deploy_and_wait(WAIT_S, update_config={C: {"RESET": ["/Word"]}}).succeeded
    assert nucleus.component_details()[C].configuration == {"Word": "hi", "Nested": {"Keep": True}}


def test_component_output_dropped_fault(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus("component_output_dropped")
    write_recipe(tmp_path, C, lifecycle={"Run": "echo hello"})
    assert nucleus.deploy_and_wait(WAIT_S, recipe_dir=tmp_path, merge={C: "1.0.0"}).succeeded
    assert output(nucleus, C) == []


def test_cli_errors_and_cancel(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    cli = nucleus.cli.cli()
    usage = nucleus.target.run([*cli, "deployment", "create", "--merge", "no-version"])
    assert usage.exit_status == 2 and "KEY=VALUE" in usage.stderr
    missing = nucleus.target.run([*cli, "deployment", "status", "--deploymentId", "nope"])
    assert missing.exit_status == 1 and "ResourceNotFoundError" in missing.stderr
    none_yet = nucleus.target.run([*cli, "deployment", "status"])
    assert none_yet.exit_status == 1 and "no local deployment yet" in none_yet.stderr
    write_recipe(tmp_path, C, lifecycle={"Install": "sleep 30"})
    dep = nucleus.deploy(recipe_dir=tmp_path, merge={C: "1.0.0"})
    queued = nucleus.deploy(merge={C: "1.0.0"})
    nucleus.cancel(queued)
    nucleus.cancel(dep)
    assert nucleus.deployment(dep).status == "CANCELED" and nucleus.deployment(queued).status == "CANCELED"
    latest = nucleus.target.run([*cli, "deployment", "status"])
    assert latest.ok and latest.stdout.startswith(f"{queued}: CANCELED"), latest.evidence()
    assert nucleus.deploy_and_wait(WAIT_S, remove=[C]).succeeded and C not in nucleus.components()
    nucleus.stop(timeout=10)
    down = nucleus.target.run([*cli, "component", "list"])
    assert down.exit_status == 1 and "the Greengrass nucleus is not running" in down.stderr


def test_unknown_fault_is_refused(make_nucleus: MakeNucleus) -> None:
    nucleus = make_nucleus(start=False)
    res = nucleus.target.run([*nucleus.cli.start_argv(), "--fault", "made_up"])
    assert res.exit_status == 2 and "unknown fault(s) made_up; allowed:" in res.stderr
