"""The ``provision`` and ``cloud`` commands of the harness CLI.

``add_subparsers`` plugs them into the top-level parser (which owns the global ``--state DIR``);
``main`` runs them standalone (``python -m harness.cloud.cli``) for scripts and tests. Commands print
results for people (and JSON with ``--json``); errors are raised as ``InputError``/``InfraError``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from harness.cloud.api import Cloud
from harness.cloud.ca import KEY_TYPES, check_key_type
from harness.cloud.discovery import DEFAULT_HOST, DEFAULT_PORT, DiscoveryServer, serve
from harness.cloud.layout import default_state_dir
from harness.cloud.registry import TaskRow
from harness.cloud.validation import load_json_file
from harness.errors import HarnessError, InputError

DEFAULT_CORE_CONNECTIVITY = "127.0.0.1:8883"


def add_subparsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``provision`` and ``cloud`` command trees."""
    prov = subparsers.add_parser(
        "provision",
        help="provision cores, client devices, templates (offline cloud)",
        description="Provision cores and client devices in the offline cloud (seed 001).",
    )
    prov.set_defaults(func=_usage(prov))
    psub = prov.add_subparsers(dest="provision_command", metavar="COMMAND")

    core = psub.add_parser("core", help="create a core: thing, certificate, key, core CA, connectivity")
    core.add_argument("name")
    core.add_argument(
        "--connectivity",
        action="append",
        metavar="HOST:PORT",
        help=f"broker address discovery returns (repeatable; default {DEFAULT_CORE_CONNECTIVITY})",
    )
    core.add_argument("--key-type", choices=KEY_TYPES, default="ec")
    core.add_argument("--template", default=None, help="provisioning template name (default: built-in)")
    core.add_argument("--core-version", default="2.5.0")
    _json_flag(core)
    core.set_defaults(func=_cmd_core)

    devices = psub.add_parser("devices", help="create N client devices associated with a core")
    devices.add_argument("--core", required=True)
    devices.add_argument("--count", type=int, required=True)
    devices.add_argument("--prefix", required=True)
    devices.add_argument("--start", type=int, default=0, help="first number (default 0)")
    devices.add_argument("--key-type", choices=KEY_TYPES, default="ec")
    devices.add_argument("--template", default=None, help="provisioning template name (default: built-in)")
    devices.add_argument("--batch-size", type=int, default=None)
    devices.add_argument("--workers", type=int, default=None, help="key generation processes (default: CPUs)")
    devices.add_argument("--timeout", type=float, default=3600.0)
    _json_flag(devices)
    devices.set_defaults(func=_cmd_devices)

    delete = psub.add_parser("delete-devices", help="deprovision client devices")
    delete.add_argument("--core", required=True)
    delete.add_argument("names", nargs="+")
    _json_flag(delete)
    delete.set_defaults(func=_cmd_delete_devices)

    task = psub.add_parser("task", help="submit a core/device/deployment task from a JSON file, or show one")
    task.add_argument("action", choices=["core", "device", "deployment", "show", "list"])
    task.add_argument("arg", nargs="?", help="JSON file (submit) or task id (show)")
    task.add_argument("--core", help="the core of a device task")
    task.add_argument("--batch-size", type=int, default=None)
    task.add_argument("--no-wait", action="store_true")
    task.add_argument("--items", action="store_true", help="show per-item status")
    task.set_defaults(func=_cmd_task)

    resume = psub.add_parser("resume", help="finish tasks an earlier run left unfinished")
    resume.add_argument("--timeout", type=float, default=3600.0)
    resume.set_defaults(func=_cmd_resume)

    template = psub.add_parser("template", help="provisioning templates: add FILE, list, show NAME")
    template.add_argument("action", choices=["add", "list", "show"])
    template.add_argument("arg", nargs="?")
    template.add_argument("--name", help="template name for add (default: file name without .json)")
    template.set_defaults(func=_cmd_template)

    comp = psub.add_parser("component-template", help="component templates: add FILE | KEY=VERSION..., show")
    comp.add_argument("action", choices=["add", "show"])
    comp.add_argument("name_or_file")
    comp.add_argument("components", nargs="*", metavar="KEY=VERSION")
    comp.set_defaults(func=_cmd_component_template)

    deploy = psub.add_parser("deploy", help="apply a component-template version to cores")
    deploy.add_argument("template", metavar="NAME[@VERSION]")
    deploy.add_argument("--core", action="append", default=[])
    deploy.add_argument("--group", action="append", default=[])
    deploy.set_defaults(func=_cmd_deploy)

    fleet = psub.add_parser("fleet-summary", help="template versions in use across the fleet")
    fleet.set_defaults(func=lambda args: _print_json(_cloud(args).fleet_summary()))

    cloud = subparsers.add_parser(
        "cloud",
        help="offline cloud services: discovery endpoint, exports",
        description="Run the offline cloud's services and inspect its state.",
    )
    cloud.set_defaults(func=_usage(cloud))
    csub = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND")

    srv = csub.add_parser("serve", help="run the discovery endpoint (mutual TLS) until SIGINT/SIGTERM")
    srv.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free port (default {DEFAULT_PORT})"
    )
    srv.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    srv.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    srv.set_defaults(func=_cmd_serve)

    export = csub.add_parser(
        "export-device", help="write cert.pem, key.pem (0600) and root-ca.pem of a thing"
    )
    export.add_argument("name")
    export.add_argument("--out", type=Path, required=True)
    export.set_defaults(func=_cmd_export)

    revoke = csub.add_parser("revoke", help="revoke a thing's certificates (or one certificate id)")
    revoke.add_argument("thing_or_cert_id")
    revoke.set_defaults(func=_cmd_revoke)

    server_cert = csub.add_parser("issue-server-cert", help="issue a core's broker certificate from its CA")
    server_cert.add_argument("core")
    server_cert.add_argument(
        "--san", action="append", default=[], help="default: connectivity hosts, localhost"
    )
    server_cert.add_argument("--days", type=float, default=7.0)
    server_cert.set_defaults(func=_cmd_server_cert)

    policy = csub.add_parser("client-policy", help="set a core's deviceGroups client-device policy from JSON")
    policy.add_argument("core")
    policy.add_argument("file", type=Path)
    policy.set_defaults(func=_cmd_client_policy)

    show = csub.add_parser("show", help="show a core (seed GET /cores/<name>) or list cores")
    show.add_argument("core", nargs="?")
    show.set_defaults(func=_cmd_show)

    check = csub.add_parser(
        "check", help="verify registry and files are consistent; --repair removes orphans"
    )
    check.add_argument("--repair", action="store_true")
    check.set_defaults(func=_cmd_check)


# -- helpers --------------------------------------------------------------------------------------


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _state(args: argparse.Namespace) -> Path:
    state = getattr(args, "state", None)
    return Path(state) if state else default_state_dir()


def _cloud(args: argparse.Namespace, **kwargs: Any) -> Cloud:
    return Cloud(_state(args), **kwargs)


def _print_json(data: Any) -> int:
    print(json.dumps(data, indent=2))
    return 0


def _progress(started: float) -> Callable[[TaskRow, dict[str, int]], None]:
    def report(task: TaskRow, counts: dict[str, int]) -> None:
        done = counts["Success"] + counts["Failure"]
        total = sum(counts.values())
        print(
            f"  task {task.id}: {done}/{total} done ({counts['Failure']} failed), "
            f"{time.monotonic() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    return report


def _finish_task(task: dict[str, Any], as_json: bool) -> int:
    if as_json:
        _print_json(task)
    else:
        s = task["summary"]
        print(
            f"task {task['id']}: {task['taskStatus']} - {s['success']} succeeded, {s['failure']} failed "
            f"of {s['total']}" + (f" ({task['statusMessage']})" if task.get("statusMessage") else "")
        )
    return 0 if task["taskStatus"] == "Success" else 1


# -- provision ------------------------------------------------------------------------------------


def _cmd_core(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        kwargs: dict[str, Any] = {
            "key_type": check_key_type(args.key_type),
            "core_version": args.core_version,
        }
        if args.template:
            kwargs["template"] = args.template
        core = cloud.provision_core(args.name, args.connectivity or [DEFAULT_CORE_CONNECTIVITY], **kwargs)
        if args.json:
            return _print_json(core)
        files = cloud.device_files(args.name)
        print(f"core {args.name}: {core['thingArn']}")
        print(f"  certificate {files.cert_path}\n  key         {files.key_path}")
        print(f"  core CA     {cloud.core_ca(args.name).cert_path}")
        print(
            "  connectivity "
            + ", ".join(f"{c['HostAddress']}:{c['PortNumber']}" for c in core["connectivity"])
        )
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with _cloud(args, workers=args.workers) as cloud:
        kwargs: dict[str, Any] = {
            "key_type": check_key_type(args.key_type),
            "start": args.start,
            "batch_size": args.batch_size,
            "timeout": args.timeout,
            "progress": _progress(started),
        }
        if args.template:
            kwargs["template"] = args.template
        task = cloud.provision_devices(args.core, args.count, args.prefix, **kwargs)
        if not args.json:
            print(f"{args.count} devices in {time.monotonic() - started:.1f} s")
        return _finish_task(task, args.json)


def _cmd_delete_devices(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        return _finish_task(cloud.delete_devices(args.core, args.names), args.json)


def _cmd_task(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        if args.action == "list":
            return _print_json(cloud.tasks())
        if not args.arg:
            raise InputError(
                f"provision task {args.action}: give a {'task id' if args.action == 'show' else 'file'}"
            )
        if args.action == "show":
            return _print_json(cloud.task(args.arg, include_items=args.items))
        body = Path(args.arg)
        if args.action == "core":
            task_id = cloud.submit_core_task(body, batch_size=args.batch_size)
        elif args.action == "device":
            if not args.core:
                raise InputError("provision task device: --core is required")
            task_id = cloud.submit_device_task(args.core, body, batch_size=args.batch_size)
        else:
            task_id = cloud.submit_deployment_task(body, batch_size=args.batch_size)
        if args.no_wait:
            print(task_id)
            return 0
        return _finish_task(
            cloud.wait_task(task_id, include_items=args.items, progress=_progress(time.monotonic())), False
        )


def _cmd_resume(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        ids = cloud.resume_tasks()
        if not ids:
            print("no unfinished tasks")
            return 0
        status = 0
        for task_id in ids:
            status |= _finish_task(
                cloud.wait_task(
                    task_id, args.timeout, include_items=False, progress=_progress(time.monotonic())
                ),
                False,
            )
        return status


def _cmd_template(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        if args.action == "list":
            print("\n".join(cloud.provisioning_templates()))
            return 0
        if not args.arg:
            raise InputError(
                f"provision template {args.action}: give a {'file' if args.action == 'add' else 'name'}"
            )
        if args.action == "add":
            parsed = cloud.put_provisioning_template(Path(args.arg), name=args.name)
            print(f"template {parsed.name} stored")
            return 0
        return _print_json(cloud.provisioning_template(args.arg).body)


def _cmd_component_template(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        if args.action == "show":
            name, _, version = args.name_or_file.partition("@")
            return _print_json(cloud.component_template(name, int(version) if version else None))
        if args.components:
            comps = []
            for text in args.components:
                key, sep, version = text.partition("=")
                if not sep:
                    raise InputError(f"component {text!r}: expected KEY=VERSION")
                comps.append({"key": key, "version": version})
            return _print_json(cloud.create_component_template(args.name_or_file, comps))
        return _print_json(cloud.create_component_template(Path(args.name_or_file)))


def _cmd_deploy(args: argparse.Namespace) -> int:
    name, _, version = args.template.partition("@")
    if version and not version.isdigit():
        raise InputError(f"template {args.template!r}: expected NAME or NAME@VERSION")
    with _cloud(args) as cloud:
        task = cloud.deploy(name, int(version) if version else None, cores=args.core, groups=args.group)
        return _finish_task(task, False)


# -- cloud ----------------------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def ready(server: DiscoveryServer) -> None:
        if args.port_file:
            args.port_file.write_text(f"{server.port}\n")
        print(f"discovery endpoint listening on {server.url} (Ctrl-C to stop)", flush=True)

    try:
        with _cloud(args) as cloud:
            stats = serve(cloud.ctx, args.host, args.port, stop=stop, on_ready=ready)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped; " + ", ".join(f"{k}={v}" for k, v in sorted(stats.items())), flush=True)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        files = cloud.export_device(args.name, args.out)
    print(f"{files.cert_path}\n{files.key_path}\n{files.root_ca_path}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        for cert_id in cloud.revoke(args.thing_or_cert_id):
            print(f"revoked {cert_id}")
    return 0


def _cmd_server_cert(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        cert, key = cloud.issue_server_cert(args.core, args.san or None, args.days)
    print(f"{cert}\n{key}")
    return 0


def _cmd_client_policy(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        policy = cloud.set_client_policy(args.core, load_json_file(args.file), source=str(args.file))
    print(f"core {args.core}: {len(policy.definitions)} device groups, {len(policy.policies)} policies")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        if args.core:
            return _print_json(cloud.core(args.core))
        return _print_json(
            {
                "cores": [{"name": c, "clientDevices": len(cloud.devices(c))} for c in cloud.cores()],
                "rootCa": str(cloud.root_ca_path),
            }
        )


def _cmd_check(args: argparse.Namespace) -> int:
    with _cloud(args) as cloud:
        report = cloud.repair() if args.repair else cloud.check()
    for problem in report.problems:
        print(f"problem: {problem}")
    for orphan in report.orphans:
        print(f"{'removed' if args.repair else 'orphan'}: {orphan}")
    print("consistent" if report.ok else f"{len(report.problems)} problems")
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m harness.cloud.cli [--state DIR] provision|cloud ...``."""
    parser = argparse.ArgumentParser(prog="harness-cloud", description="The harness's offline cloud side.")
    parser.add_argument("--state", help="state directory (default ./.harness-state or $HARNESS_CLOUD_STATE)")
    add_subparsers(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status


if __name__ == "__main__":
    sys.exit(main())
