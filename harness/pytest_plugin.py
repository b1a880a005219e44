"""pytest plugin: device profiles and targets as fixtures, so suites run inside anyone's pytest session.

``--profile NAME`` (repeatable) parametrizes every test that asks for ``profile`` or ``target``; each
profile's tests are grouped for pytest-xdist (``--dist loadgroup``) so one worker owns one target, never
two workers one board. Targets live for the session (tbot style) and are power-cycled after a failed or
destructive test so the next test starts from a known state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError, UserlandMismatch
from harness.profiles import DeviceProfile, find_profile
from harness.pytest_report import attach_profile, attach_record
from harness.records import TestRecord
from harness.targets.base import Target

#: Core, cloud and per-suite fixtures live in their own modules and come with this plugin.
pytest_plugins = [
    "harness.pytest_core",
    "harness.pytest_nucleus",
    "harness.pytest_ota",
    "harness.pytest_power",
    "harness.pytest_network",
    "harness.pytest_docker",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "Greengrass conformance harness")
    group.addoption(
        "--profile",
        action="append",
        default=[],
        dest="harness_profiles",
        help="device profile name or YAML path (repeat for several; each test runs on each)",
    )
    group.addoption(
        "--report-dir",
        default=None,
        dest="harness_report_dir",
        help="write the conformance report (junit.xml, results.json, index.html) here",
    )
    group.addoption("--run-id", default=None, dest="harness_run_id", help="run id recorded in the report")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "destructive: the test cuts power or breaks the target; it is reset after"
    )
    config.addinivalue_line(
        "markers", "requirement(text, source): what the scenario checks and where it comes from"
    )
    report_dir = config.getoption("harness_report_dir")
    if report_dir and not hasattr(config, "workerinput"):
        from pathlib import Path

        from harness.pytest_report import ReportCollector

        config.pluginmanager.register(
            ReportCollector(Path(report_dir), config.getoption("harness_run_id")), "harness-report"
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "profile_name" in metafunc.fixturenames:
        names = metafunc.config.getoption("harness_profiles") or []
        if not names:
            metafunc.parametrize(
                "profile_name",
                [pytest.param(None, marks=pytest.mark.skip(reason="no --profile given"))],
                scope="session",
                ids=["no-profile"],
            )
            return
        metafunc.parametrize("profile_name", names, scope="session", ids=names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "profile_name" in callspec.params:
            item.add_marker(pytest.mark.xdist_group(str(callspec.params["profile_name"])))


class TargetUnavailable(Exception):
    """The target a test needs could not be brought up: the test reports ``error``, not ``failed``."""


class TargetPool:
    """Targets of this session, one per profile, created on first use and closed at the end."""

    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}
        self.profiles: dict[str, DeviceProfile] = {}
        self.broken: dict[str, HarnessError] = {}

    def profile(self, name: str) -> DeviceProfile:
        """A profile by the name or path given on the command line (also reachable by its own name)."""
        if name not in self.profiles:
            p = find_profile(name)
            self.profiles[name] = p
            self.profiles.setdefault(p.name, p)
        return self.profiles[name]

    def try_get(self, name: str) -> Target | HarnessError:
        """The powered target, or the error that keeps it from running commands."""
        if name in self.broken:
            return self.broken[name]
        if name not in self.targets:
            from harness.targets.factory import make_target

            target = make_target(self.profile(name))
            try:
                target.power_on()
            except HarnessError as exc:
                target.close()
                self.broken[name] = exc
                return exc
            self.targets[name] = target
        return self.targets[name]

    def get(self, name: str, node: pytest.Item) -> Target:
        got = self.try_get(name)
        if isinstance(got, HarnessError):
            if not isinstance(got, UserlandMismatch):
                node.user_properties.append(("harness_infra", "1"))
            raise TargetUnavailable(f"target {name} could not be powered on: {got}")
        target = self.targets[name]
        attach_profile(node, target.name, _profile_properties(self.profile(name), target))
        target = self.targets[name]
        if not target.is_on:
            target.power_on()
        return target

    def reset(self, name: str) -> None:
        target = self.targets.get(name)
        if target is not None:
            target.power_cut()
            target.power_on()

    def close(self) -> None:
        while self.targets:
            _, target = self.targets.popitem()
            target.close()


@pytest.fixture(scope="session")
def target_pool() -> Iterator[TargetPool]:
    pool = TargetPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def profile(profile_name: str, target_pool: TargetPool) -> DeviceProfile:
    """The device profile under test (from ``--profile``)."""
    try:
        return target_pool.profile(profile_name)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def target(
    request: pytest.FixtureRequest, profile: DeviceProfile, target_pool: TargetPool
) -> Iterator[Target]:
    """A powered target for ``profile``; reset after a failed or destructive test."""
    t = target_pool.get(profile.name, request.node)
    yield t
    rep = getattr(request.node, "rep_call", None)
    failed = rep is not None and rep.failed
    if failed or request.node.get_closest_marker("destructive"):
        target_pool.reset(profile.name)


def _profile_properties(profile: DeviceProfile, target: Target) -> dict[str, Any]:
    props: dict[str, Any] = {
        "arch": profile.arch,
        "transport": profile.transport,
        "greengrass": profile.greengrass,
        "kernel_authoritative": not target.kernel_is_host,
    }
    key = getattr(target, "rootfs_key", None)
    if key:
        props["rootfs_key"] = key
    return props


@pytest.fixture(autouse=True)
def _harness_profile_property(request: pytest.FixtureRequest) -> None:
    """Name the profile of every parametrized test in its report row."""
    marker = request.node.get_closest_marker("requirement")
    if marker is not None:
        request.node.user_properties.append(
            ("harness_requirement", str(marker.args[0]) if marker.args else "")
        )
        request.node.user_properties.append(("harness_source", str(marker.kwargs.get("source", ""))))
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and "profile_name" in callspec.params:
        given = str(callspec.params["profile_name"])
        name = Path(given).stem if given.endswith((".yaml", ".yml")) else given
        request.node.user_properties.append(("harness_profile", name))
        others = [str(v) for k, v in callspec.params.items() if k != "profile_name"]
        base = request.node.originalname.removeprefix("test_")
        request.node.user_properties.append(
            ("harness_test_id", f"{base}[{','.join(others)}]" if others else base)
        )


@pytest.fixture
def record_result(request: pytest.FixtureRequest) -> Callable[[TestRecord], None]:
    """Hand the test's own report row (id, evidence, requirement, source) to the conformance report."""

    def record(row: TestRecord) -> None:
        attach_record(request.node, row)

    return record


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
