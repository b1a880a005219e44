"""Core-software update rules of the reference nucleus, on the host (the agent is stdlib Python).

The scenarios (scenarios/ota) check the same rules on emulated boards; here each rule and each seeded
defect is exercised in seconds: the loader's three tries and rollback, the health check, the outcome
states, refusing a downgrade, the launch-directory switch, the cut-point protocol and the V1 OTA agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nucleus_support import MakeNucleus, write_recipe

from harness.cloud.jobs import Job, JobsService
from harness.core.nucleus import core_versions
from harness.core.nucleus.device import cutpoints
from harness.core.nucleus.device.alts import LaunchDirs
from harness.core.nucleus.driver import NucleusDriver
from harness.core.nucleus.ota import V1Ota, update_core_v2
from harness.errors import InputError
from harness.profiles import DeviceProfile

BEAT = "com.example.Beat"
TIMEOUT = 60.0


def _nucleus(make: MakeNucleus, tmp_path: Path, *faults: str) -> NucleusDriver:
    driver: NucleusDriver = make(*faults, health_check_timeout=10)
    write_recipe(tmp_path / "r", BEAT, lifecycle={"Run": "echo beat; exec sleep 1000"})
    info = driver.deploy_and_wait(20, recipe_dir=tmp_path / "r", merge={BEAT: "1.0.0"})
    assert info.succeeded, info.summary()
    return driver


def _loader_log(driver: NucleusDriver) -> str:
    return Path(driver.cli.root, "logs", "loader.log").read_text()


def test_update_to_a_good_version_succeeds(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    driver = _nucleus(make_nucleus, tmp_path)
    u = update_core_v2(driver, "2.1.0", timeout=TIMEOUT)
    assert (u.before, u.after, u.status, u.outcome) == ("2.0.0", "2.1.0", "SUCCEEDED", "SUCCESSFUL"), u
    assert u.unavailable_s is not None and 0 < u.unavailable_s < 30
    alts = LaunchDirs(driver.cli.root)
    assert alts.target("current") == u.ident and not alts.has("old") and not alts.has("new")
    assert driver.wait_state(BEAT, ["RUNNING"], 20).version == "1.0.0"


def test_version_that_fails_to_start_is_rolled_back_after_three_tries(
    make_nucleus: MakeNucleus, tmp_path: Path
) -> None:
    driver = _nucleus(make_nucleus, tmp_path)
    u = update_core_v2(driver, "2.2.0", timeout=TIMEOUT)
    assert (u.after, u.status, u.outcome) == ("2.0.0", "FAILED", "FAILED_ROLLBACK_COMPLETE"), u
    assert "restart_panic" in u.reason
    assert _loader_log(driver).count("code=1,") == 3
    assert Path(driver.cli.root, "work/aws.greengrass.Nucleus/restart_panic").exists()
    assert LaunchDirs(driver.cli.root).target("current") == "init"


def test_unhealthy_version_is_rolled_back(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    driver = _nucleus(make_nucleus, tmp_path)
    u = update_core_v2(driver, "2.3.0", timeout=TIMEOUT)
    assert (u.after, u.status, u.outcome) == ("2.0.0", "FAILED", "FAILED_ROLLBACK_COMPLETE"), u
    assert f"{BEAT} BROKEN" in u.reason
    assert driver.wait_state(BEAT, ["RUNNING"], 20)


def test_same_or_older_version_is_refused_unless_asked(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    driver = make_nucleus()
    same = update_core_v2(driver, "2.0.0", timeout=TIMEOUT)
    assert (same.status, same.outcome, same.after) == ("FAILED", "FAILED_NO_STATE_CHANGE", "2.0.0")
    assert "allowDowngrade" in same.reason
    asked = update_core_v2(driver, "2.0.0", timeout=TIMEOUT, allow_downgrade=True)
    assert (asked.status, asked.after) == ("SUCCEEDED", "2.0.0"), asked


def test_rollback_disabled_leaves_the_core_down(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    driver = _nucleus(make_nucleus, tmp_path, "rollback_disabled")
    dep = driver.deploy(**_package(tmp_path, "2.2.0"))
    deadline = time.monotonic() + TIMEOUT
    while "loader-giving-up" not in _loader_log(driver) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "rollback disabled" in _loader_log(driver)
    assert not driver.is_running()
    assert dep


def test_health_check_always_passes_reports_a_broken_update_successful(
    make_nucleus: MakeNucleus, tmp_path: Path
) -> None:
    driver = _nucleus(make_nucleus, tmp_path, "health_check_always_passes")
    u = update_core_v2(driver, "2.3.0", timeout=TIMEOUT)
    assert (u.after, u.outcome) == ("2.3.0", "SUCCESSFUL"), u


def test_loader_counts_no_tries_boot_loops(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    driver = _nucleus(make_nucleus, tmp_path, "loader_counts_no_tries")
    driver.deploy(**_package(tmp_path, "2.2.0"))
    deadline = time.monotonic() + TIMEOUT
    while _loader_log(driver).count("code=1,") < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    log = _loader_log(driver)
    assert log.count("code=1,") >= 5 and "rolled-back" not in log


def test_downgrade_unchecked_applies_the_same_version(make_nucleus: MakeNucleus) -> None:
    driver = make_nucleus("downgrade_unchecked")
    u = update_core_v2(driver, "2.0.0", timeout=TIMEOUT)
    assert u.outcome == "SUCCESSFUL", u


def _package(tmp_path: Path, version: str) -> dict[str, Any]:
    pkg = core_versions.package(version, tmp_path / f"pkg-{version}")
    return {
        "recipe_dir": pkg.recipe_dir,
        "artifact_dir": pkg.artifact_dir,
        "merge": {core_versions.NUCLEUS: version},
    }


# -- launch directories and cut points -------------------------------------------------------------
def _alts(tmp_path: Path, atomic: bool = True) -> LaunchDirs:
    alts = LaunchDirs(str(tmp_path), atomic=atomic)
    for name in ("a", "b"):
        (tmp_path / "alts" / name / "distro").mkdir(parents=True)
    alts.set("current", "a")
    return alts


def test_loader_switch_and_rollback(tmp_path: Path) -> None:
    alts = _alts(tmp_path)
    alts.set("new", "b")
    assert alts.activate_on_start().startswith("activated b")
    assert (alts.target("current"), alts.target("old"), alts.has("new")) == ("b", "a", False)
    assert alts.rollback()
    assert (alts.target("current"), alts.target("broken"), alts.has("old")) == ("a", "b", False)
    assert not alts.rollback()  # no old version left


def test_interrupted_rollback_is_finished_on_start(tmp_path: Path) -> None:
    alts = _alts(tmp_path)
    alts.set("old", "b")
    alts.set("broken", "a")  # a cut after "rollback.broken_linked"
    assert alts.activate_on_start() == "resumed rollback to b"
    assert alts.target("current") == "b"


CUT_CHILD = """
import sys
from harness.core.nucleus.device.alts import LaunchDirs
alts = LaunchDirs(sys.argv[1], atomic=sys.argv[2] == "1")
alts.set("current", "b")
alts.set("current", "a")
"""


@pytest.mark.parametrize(
    ("atomic", "point", "current_after_cut"),
    [(True, "meta.between_renames", "b"), (False, "launch.link_removed@2", None)],
)
def test_cutpoint_freezes_at_the_nth_hit_and_writes_the_marker(
    tmp_path: Path, atomic: bool, point: str, current_after_cut: str | None
) -> None:
    _alts(tmp_path)
    marker = tmp_path / "marker"
    env = {**os.environ, cutpoints.ENV_POINT: point, cutpoints.ENV_MARKER: str(marker)}
    child = subprocess.Popen(
        [sys.executable, "-c", CUT_CHILD, str(tmp_path), "1" if atomic else "0"], env=env
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if atomic:  # no renamed metadata in a link switch: the point is never hit, the child just ends
            assert child.wait(timeout=20) == 0 and not marker.exists()
            return
        assert marker.read_text() == "launch.link_removed@2\n"
        assert child.poll() is None, "the process must wait for the cut, not go on"
        assert LaunchDirs(str(tmp_path)).target("current") == current_after_cut
    finally:
        child.kill()
        child.wait(timeout=10)


def test_cutpoint_names_are_documented() -> None:
    doc = cutpoints.__doc__ or ""
    missing = [n for n in cutpoints.NAMES if f"``{n}``" not in doc]
    assert not missing


# -- V1 OTA agent ---------------------------------------------------------------------------------
def _v1(make: MakeNucleus, *faults: str) -> tuple[V1Ota, JobsService, DeviceProfile]:
    driver = make(*faults)
    profile = driver.target.profile
    v1 = V1Ota(driver, profile, "host-core")
    v1.setup()
    return v1, JobsService(), profile


def _job(jobs: JobsService, v1: V1Ota, tmp_path: Path, version: str = "2.1.0", **pair: str) -> Job:
    pkg = core_versions.package(version, tmp_path / f"v1-{version}")
    return jobs.create_software_update_job(
        [v1.thing],
        software="core",
        version=version,
        os=pair.get("os", v1.profile.os),
        architecture=pair.get("arch", v1.profile.arch),
        package=pkg.tarball,
    )


def test_v1_job_updates_the_core_and_keeps_state(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    v1, jobs, _ = _v1(make_nucleus)
    before = v1.state_digest()
    job = _job(jobs, v1, tmp_path)
    execution, u = v1.run_job(jobs, job, timeout=120)
    after = v1.state_digest()
    assert (execution.status, u.before, u.after) == ("SUCCEEDED", "2.0.0", "2.1.0"), u
    assert all(before[k] == after[k] for k in ("config/config.json", "var/shadows/shadow.json"))
    assert not after["var/credentials/cache.json"] and not after["var/queue/pending.json"]
    assert jobs.counters(job.id)["succeeded"] == 1


@pytest.mark.parametrize(
    ("script", "how"), [("ggc_pre_update.sh", "missing"), ("ggc_post_update.sh", "failing")]
)
def test_v1_bad_script_fails_and_the_core_keeps_running(
    make_nucleus: MakeNucleus, tmp_path: Path, script: str, how: str
) -> None:
    v1, jobs, _ = _v1(make_nucleus)
    v1.break_script(script, how)
    execution, u = v1.run_job(jobs, _job(jobs, v1, tmp_path), timeout=120)
    assert (execution.status, u.after) == ("FAILED", "2.0.0"), u
    assert script in u.reason


def test_v1_unchecked_scripts_let_a_failing_script_pass(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    v1, jobs, _ = _v1(make_nucleus, "update_scripts_unchecked")
    v1.break_script("ota_post_update.sh", "failing")
    execution, _ = v1.run_job(jobs, _job(jobs, v1, tmp_path), timeout=120)
    assert execution.status == "SUCCEEDED"


def test_v1_wrong_pair_and_small_disk_are_rejected(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    v1, jobs, profile = _v1(make_nucleus)
    other = "aarch64" if profile.arch != "aarch64" else "x86_64"
    execution, u = v1.run_job(jobs, _job(jobs, v1, tmp_path, arch=other), timeout=60)
    assert execution.status == "REJECTED" and "this device is" in u.reason
    v1.setup(min_free_bytes=1 << 50)
    execution, u = v1.run_job(jobs, _job(jobs, v1, tmp_path), timeout=60)
    assert execution.status == "REJECTED" and "MiB free" in u.reason


def test_jobs_service_validates_and_counts(tmp_path: Path) -> None:
    jobs = JobsService()
    pkg = tmp_path / "p.tar.gz"
    pkg.write_bytes(b"x")
    with pytest.raises(InputError, match="allowed pairs: ubuntu/x86_64"):
        jobs.create_software_update_job(
            ["t"], software="core", version="1.0.0", os="debian", architecture="x86_64", package=pkg
        )
    with pytest.raises(InputError, match=r"'softwareToUpdate'.*allowed: core, ota_agent"):
        jobs.create_software_update_job(
            ["t"], software="kernel", version="1.0.0", os="ubuntu", architecture="x86_64", package=pkg
        )
    job = jobs.create_software_update_job(
        ["a", "b", "c"], software="core", version="1.0.0", os="ubuntu", architecture="x86_64", package=pkg
    )
    jobs.start(job.id, "a")
    jobs.report(job.id, "a", "SUCCEEDED")
    jobs.report(job.id, "b", "REJECTED", "no")
    assert jobs.counters(job.id) == {
        "queued": 1,
        "inProgress": 0,
        "succeeded": 1,
        "failed": 0,
        "rejected": 1,
        "canceled": 0,
        "removed": 0,
        "timedOut": 0,
    }
    with pytest.raises(InputError, match="already SUCCEEDED"):
        jobs.report(job.id, "a", "FAILED")
    assert json.loads(json.dumps(job.document))["softwareToUpdate"] == "core"


def test_core_started_with_a_cutpoint_freezes_there_during_an_update(
    make_nucleus: MakeNucleus, tmp_path: Path
) -> None:
    """The power-loss protocol end to end: env through ``start``, the loader, the nucleus, the marker."""
    driver: NucleusDriver = make_nucleus(start=False)
    marker = tmp_path / "cut"
    driver.start(
        timeout=30, env={cutpoints.ENV_POINT: "launch.new_linked", cutpoints.ENV_MARKER: str(marker)}
    )
    driver.deploy(**_package(tmp_path, "2.1.0"))
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "launch.new_linked@1\n"
    alts = LaunchDirs(driver.cli.root)
    assert alts.has("new") and alts.target("current") == "init"  # frozen before the exit for the switch
    assert driver.is_running()
