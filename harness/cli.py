"""The ``harness`` command line: setup, profiles, exec, rootfs, qualify, and the offline cloud side.

Every user-facing error becomes one message and a documented exit status (0 ok, 1 a required test failed,
2 bad input, 3 the run could not complete); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from harness import __version__
from harness.errors import EXIT_USAGE, HarnessError, InputError, interrupt_on_sigterm


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit status 2 and our prefix (as argparse does)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"harness: error: {message}\n")


def cmd_setup(args: argparse.Namespace) -> int:
    from harness.prereqs import run_setup

    return run_setup(dry_run=args.dry_run)


def cmd_profiles(args: argparse.Namespace) -> int:
    from harness.profiles import dump_schema, list_profile_files, load_profile_file

    if args.schema:
        print(dump_schema())
        return 0
    status = 0
    for path in list_profile_files():
        try:
            p = load_profile_file(path)
        except InputError as exc:
            print(str(exc), file=sys.stderr)
            status = EXIT_USAGE
            continue
        userland = f"{p.userland.suite}/{p.userland.architecture}" if p.userland else "-"
        cpu = p.emulation.cpu or "-"
        print(
            f"{p.name:22} {p.arch:8} {p.transport:10} {userland:16} cpu={cpu:11} gg={p.greengrass} "
            f"os={p.os}  {p.description}"
        )
    return status


def cmd_exec(args: argparse.Namespace) -> int:
    from harness.profiles import find_profile
    from harness.targets.factory import make_target

    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise InputError(
            "harness exec: give the command after `--`, e.g. harness exec --profile qemu-armv6l -- uname -m"
        )
    profile = find_profile(args.profile)
    target = make_target(profile)
    try:
        target.power_on()
        proc = target.popen(
            argv,
            stdin=None if sys.stdin.isatty() else subprocess.DEVNULL,
            stdout=None,
            stderr=None,
            cwd=args.cwd,
        )
        try:
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            target._kill(proc)
            proc.wait(timeout=30)
            print(f"harness: command did not finish within {args.timeout:g} s", file=sys.stderr)
            return 124
        return 128 - rc if rc < 0 else rc
    finally:
        target.close()


def cmd_rootfs(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from harness.profiles import find_profile, list_profile_files, load_profile_file
    from harness.rootfs import RootfsSpec, cached, ensure_rootfs

    profiles = [find_profile(n) for n in args.profile] if args.profile else [
        load_profile_file(f) for f in list_profile_files()]
    specs: dict[str, tuple[str, RootfsSpec]] = {}
    for p in profiles:
        if p.userland is not None:
            spec = RootfsSpec.from_userland(p.userland)
            specs.setdefault(spec.key, (p.name, spec))
    if args.action == "list":
        for key, (name, spec) in specs.items():
            where = cached(spec)
            print(f"{name:22} {key:40} {'cached: ' + str(where) if where else 'not built'}")
        return 0

    def build(item: tuple[str, RootfsSpec]) -> str:
        name, spec = item
        return f"{name}: {ensure_rootfs(spec)}"

    todo = [v for v in specs.values() if cached(v[1]) is None]
    for name, spec in todo:
        print(f"{name}: building {spec.key} ...", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for line in pool.map(build, todo):
            print(line, flush=True)
    print(f"rootfs: {len(specs)} root file systems ready ({len(todo)} built now)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=__doc__)
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("--state", default=None, help="state directory of the offline cloud side")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("setup", help="install and enable system prerequisites (root)")
    p.add_argument("--dry-run", action="store_true", help="only print what would be done")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("profiles", help="list device profiles, or print their JSON schema")
    p.add_argument("--schema", action="store_true", help="print the profile JSON schema")
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("exec", help="run a command on a target and exit with its status")
    p.add_argument("--profile", required=True, help="profile name or path to a profile YAML file")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before the command is killed")
    p.add_argument("--cwd", default=None, help="working directory on the target")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("rootfs", help="build or list cached root file systems")
    p.add_argument("action", choices=["build", "list"])
    p.add_argument("--profile", action="append", help="only these profiles (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="build this many at once (default 1)")
    p.set_defaults(func=cmd_rootfs)

    _add_optional(sub, "harness.qualify", "add_subparsers")
    _add_optional(sub, "harness.load_cli", "add_subparsers")
    _add_optional(sub, "harness.simulate_cli", "add_subparsers")
    _add_optional(sub, "harness.cloud.cli", "add_subparsers")
    return parser


def _add_optional(sub: Any, module: str, attr: str) -> None:
    """Commands from parts of the harness that register themselves."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return
        raise
    getattr(mod, attr)(sub)


def main(argv: Sequence[str] | None = None) -> int:
    interrupt_on_sigterm()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = int(args.func(args))
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    return rc


def _json(obj: object) -> str:
    return json.dumps(obj, indent=2)


if __name__ == "__main__":
    sys.exit(main())
