"""``harness qualify``: the main job. Profiles -> root file systems -> suites under pytest -> one report.

Suites are the folders of ``scenarios/``; pytest (with pytest-xdist when several profiles are given, one
worker per profile) runs them with the harness plugin, which writes ``reports/<run-id>/`` after every test.
The exit status is decided from that report: 0 all required passed, 1 a required test failed, 2 bad input,
3 the run could not complete (a partial report is still there).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.errors import EXIT_INFRA, InputError
from harness.paths import REPO_ROOT, REPORTS_DIR
from harness.profiles import DeviceProfile

SCENARIOS_DIR = REPO_ROOT / "scenarios"
#: The embedded default: an emulated 64-bit ARM board running the harness's reference core.
DEFAULT_PROFILES = ["qemu-aarch64"]
SUITE_ORDER = [
    "board",
    "discovery",
    "mqtt_relay",
    "deployment",
    "ota",
    "power_loss",
    "network",
    "docker",
    "load",
]
PYTEST_TIMEOUT_S = 4 * 3600


def available_suites() -> list[str]:
    found = {p.name for p in SCENARIOS_DIR.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    return [s for s in SUITE_ORDER if s in found] + sorted(found - set(SUITE_ORDER))


def add_subparsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("qualify", help="run conformance suites on device profiles and write a report")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        help=f"profile name or YAML path; repeat for several (default: {', '.join(DEFAULT_PROFILES)})",
    )
    p.add_argument("--suite", action="append", default=[], help="suite to run; repeat (default: all)")
    p.add_argument("--report-dir", default=None, help="report directory (default: reports/<run-id>)")
    p.add_argument("-k", dest="keyword", default=None, help="pytest -k expression to select tests")
    p.add_argument(
        "--workers", type=int, default=None, help="parallel workers (default: one per profile, max 4)"
    )
    p.set_defaults(func=cmd_qualify)


def cmd_qualify(args: argparse.Namespace) -> int:
    from harness.profiles import find_profile
    from harness.report import Run, exit_status, new_run_id, summarize

    names = args.profile or DEFAULT_PROFILES
    profiles = [find_profile(n) for n in names]
    suites = args.suite or available_suites()
    unknown = [s for s in suites if s not in available_suites()]
    if unknown:
        raise InputError(
            f"--suite: unknown suite(s) {', '.join(unknown)}; allowed: {', '.join(available_suites())}"
        )
    run_id = new_run_id()
    report_dir = Path(args.report_dir) if args.report_dir else REPORTS_DIR / run_id
    _prepare(profiles)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        *(str(SCENARIOS_DIR / s) for s in suites),
        "-p",
        "no:cacheprovider",
        "-rfE",
        "--report-dir",
        str(report_dir),
        "--run-id",
        run_id,
        "--rootdir",
        str(REPO_ROOT),
    ]
    for p in profiles:
        argv += ["--profile", p.source if os.sep in p.source else p.name]
    workers = args.workers or min(len(profiles), 4)
    if workers > 1:
        argv += ["-n", str(workers), "--dist", "loadgroup"]
    if args.keyword:
        argv += ["-k", args.keyword]
    print(
        f"qualify: run {run_id}: suites {', '.join(suites)} on {', '.join(p.name for p in profiles)}",
        flush=True,
    )
    rc = _run_pytest(argv)
    try:
        run = Run.read(report_dir)
    except Exception as exc:  # no readable report at all: the run could not complete
        print(f"qualify: no report was written ({exc})", file=sys.stderr)
        return EXIT_INFRA
    counts = ", ".join(f"{n} {k}" for k, n in summarize(run.tests).items())
    print(f"qualify: report {report_dir / 'index.html'} ({counts})", flush=True)
    if rc not in (0, 1) or run.partial:
        print(f"qualify: the run did not complete (pytest exit {rc}); the report is partial", file=sys.stderr)
        return EXIT_INFRA
    if any(t.properties.get("infra") for t in run.tests):
        print("qualify: a target could not be brought up; see the report", file=sys.stderr)
        return EXIT_INFRA
    return exit_status(run)


def _prepare(profiles: list[DeviceProfile]) -> None:
    """Build missing root file systems up front, with progress, so suites start on ready targets."""
    from harness.rootfs import RootfsSpec, cached, ensure_rootfs

    for p in profiles:
        if p.userland is None:
            continue
        spec = RootfsSpec.from_userland(p.userland)
        if cached(spec) is None:
            print(
                f"qualify: building the {p.userland.architecture} root file system for {p.name} "
                "(first run only; a few minutes under emulation)",
                flush=True,
            )
            start = time.monotonic()
            ensure_rootfs(spec)
            print(f"qualify: built in {time.monotonic() - start:.0f} s", flush=True)


def _run_pytest(argv: list[str]) -> int:
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, start_new_session=True)
    try:
        return proc.wait(timeout=PYTEST_TIMEOUT_S)
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGINT)  # pytest stops, tears targets down, writes the partial report
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        raise
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
        return EXIT_INFRA
