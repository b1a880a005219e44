"""pytest fixtures for core-software update scenarios (scenarios/ota).

``ota`` builds on ``nucleus`` (harness.pytest_nucleus): before each test the core runs the base version
(``fixtures/core-versions/2.0.0``; a core an earlier test updated is reinstalled) and the V1 side of the
reference core is prepared (OTA agent device file, kept/lost state, ``ggc-daemon``, the four
managedRespawn scripts); after it, broken scripts are restored and a core or broker the test left down
is started again, so one test's update never leaks into the next.

``report_update`` turns a scenario's checks into its report row: the update's versions before and after,
outcome state and the time the core was unavailable go into the row's evidence and properties.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness.cloud.jobs import Job, JobsService
from harness.core.nucleus import core_versions
from harness.core.nucleus.driver import NucleusDriver
from harness.core.nucleus.ota import CoreUpdate, V1Ota, nucleus_version
from harness.errors import TargetError
from harness.profiles import DeviceProfile
from harness.pytest_core import CoreUnderTest
from harness.pytest_report import suite_of
from harness.records import TestRecord

#: One update, including three failed starts and a rollback on an emulated board.
UPDATE_TIMEOUT_S = 300.0


@dataclass
class OtaStand:
    """What an OTA scenario gets: the core's nucleus, its V1 side and the update jobs service."""

    nucleus: NucleusDriver
    v1: V1Ota
    jobs: JobsService
    profile: DeviceProfile
    cut: CoreUnderTest

    @property
    def thing(self) -> str:
        return self.v1.thing

    def job(self, version: str, *, software: str = "core", os: str = "", arch: str = "") -> Job:
        """A V1 job for this core's OS/architecture (or the pair given) with the package of ``version``."""
        import tempfile
        from pathlib import Path

        tmp = Path(tempfile.mkdtemp(prefix="gg-ota-job-"))
        pkg = core_versions.package(version, tmp)
        return self.jobs.create_software_update_job(
            [self.thing],
            software=software,
            version=version,
            os=os or self.profile.os,
            architecture=arch or self.profile.arch,
            package=pkg.tarball,
        )

    def run(self, job: Job) -> CoreUpdate:
        _, update = self.v1.run_job(self.jobs, job, timeout=UPDATE_TIMEOUT_S)
        return update


def _at_base(driver: NucleusDriver, *, force: bool = False) -> None:
    """Reinstall the base version when an earlier test left another one running (or ``force``)."""
    try:
        version = nucleus_version(driver) if driver.is_running() else ""
    except TargetError:
        version = ""
    if version == core_versions.BASE_VERSION and not force:
        return
    if driver.is_running():
        driver.stop(timeout=30)
    if force:  # the unfinished update would resume (and fail again) on the reinstalled core: drop it
        driver.target.run(["rm", "-rf", "--", f"{driver.cli.root}/deployments"], timeout=60)
        driver.deployment_ids.clear()
    driver.install()
    driver.start()


def _broker_up(cut: CoreUnderTest) -> None:
    try:
        if not cut.core.status().running:
            cut.core.start()
    except TargetError:
        pass


@pytest.fixture
def ota(
    nucleus: NucleusDriver, profile: DeviceProfile, core_under_test: CoreUnderTest
) -> Iterator[OtaStand]:
    _at_base(nucleus)
    v1 = V1Ota(nucleus, profile, core_under_test.core.name)
    v1.setup()
    yield OtaStand(nucleus, v1, JobsService(), profile, core_under_test)
    if nucleus.target.is_on:
        v1.restore_scripts()
        if not nucleus.is_running():
            try:
                nucleus.start()
            except TargetError:  # e.g. a seeded defect left a version that cannot start: start over
                _at_base(nucleus, force=True)
        _broker_up(core_under_test)


@pytest.fixture
def report_update(
    request: pytest.FixtureRequest, record_result: Callable[[TestRecord], None], profile: DeviceProfile
) -> Callable[[list[CoreUpdate], list[str]], None]:
    """Record the test's row with its updates, then fail it with every problem found (if any)."""
    started = time.monotonic()

    def report(updates: list[CoreUpdate], problems: list[str]) -> None:
        props = dict(request.node.user_properties)
        evidence = "\n".join(json.dumps(u.row(), sort_keys=True) for u in updates)
        properties = {}
        for i, u in enumerate(updates):
            for key, value in u.row().items():
                properties[f"update{i + 1}.{key}" if len(updates) > 1 else f"update.{key}"] = str(value)
        marker = request.node.get_closest_marker("requirement")
        suite = suite_of(request.node.nodeid)
        name = str(props.get("harness_test_id", request.node.name.removeprefix("test_")))
        record_result(
            TestRecord(
                id=f"{suite}.{name}",
                suite=suite,
                profile=profile.name,
                outcome="failed" if problems else "passed",
                duration_s=round(time.monotonic() - started, 3),
                requirement=str(marker.args[0]) if marker and marker.args else "",
                source=str(marker.kwargs.get("source", "")) if marker else "",
                evidence=evidence,
                message="; ".join(problems),
                properties=properties,
            )
        )
        assert not problems, "; ".join(problems) + f"\nupdates:\n{evidence}"

    return report
