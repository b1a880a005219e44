"""``greengrass-cli``: the subset of the Greengrass CLI the harness drives, with the real CLI's output.

Why the real spelling and output: the host's ``NucleusDriver`` parses this output with the same code it
uses for ``sudo /greengrass/v2/bin/greengrass-cli`` on a real core, so the reference core and a real one
are interchangeable. Supported (picocli-style options, ``--opt value`` or ``--opt=value``)::

    greengrass-cli [--ggcRootPath ROOT] deployment create [-r|--recipeDir DIR] [-a|--artifactDir DIR]
        [-m|--merge NAME=VERSION]... [--remove NAME]... [-c|--update-config JSON|FILE] [-g|--groupId G]
    greengrass-cli deployment status [-i|--deploymentId ID]       (the latest deployment without an id)
    greengrass-cli deployment cancel -i|--deploymentId ID
    greengrass-cli deployment list
    greengrass-cli component list
    greengrass-cli component details -n|--name NAME

Output::

    Local deployment submitted! Deployment Id: 3f2a...           (create)
    3f2a...: SUCCEEDED                                           (status, one block per deployment)
    Created on: 11/23/23, 5:41 AM
    Detailed Status: SUCCESSFUL
    Deployment Error Stack: DEPLOYMENT_FAILURE, COMPONENT_BROKEN   (failed deployments only)
    Deployment Error Types: USER_COMPONENT_ERROR
    Failure Cause: Service com.example.Flaky in broken state
    Components currently running in Greengrass:                  (component list)
    Component Name: com.example.HelloWorld
        Version: 1.0.0
        State: FINISHED
        Configuration: {"Message":"world"}

Talks to the daemon over ``<root>/nucleus-cli.socket`` (one JSON request and answer per connection);
imports only what it needs, because every call is a fresh python3 under qemu-user.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

SOCKET_NAME = "nucleus-cli.socket"
USAGE = """usage: greengrass-cli [--ggcRootPath ROOT] COMMAND
  deployment create [--recipeDir DIR] [--artifactDir DIR] [--merge NAME=VERSION]... [--remove NAME]...
                    [--update-config JSON|FILE] [--groupId GROUP]
  deployment status [--deploymentId ID]
  deployment cancel --deploymentId ID
  deployment list
  component list
  component details --name NAME"""

#: long option -> (short alias, takes a value, repeatable)
OPTIONS: dict[str, tuple[str, bool]] = {
    "--recipeDir": ("-r", False),
    "--artifactDir": ("-a", False),
    "--merge": ("-m", True),
    "--remove": ("", True),
    "--update-config": ("-c", False),
    "--groupId": ("-g", False),
    "--deploymentId": ("-i", False),
    "--name": ("-n", False),
}


class UsageError(Exception):
    pass


class NucleusError(Exception):
    pass


def parse_options(args: list[str]) -> dict[str, list[str]]:
    by_short = {short: long for long, (short, _) in OPTIONS.items() if short}
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        name = by_short.get(name, name)
        if name not in OPTIONS:
            raise UsageError(f"Unknown option: '{arg}'")
        if not eq:
            i += 1
            if i >= len(args):
                raise UsageError(f"Missing required parameter for option '{name}'")
            value = args[i]
        repeatable = OPTIONS[name][1]
        if name in out and not repeatable:
            raise UsageError(f"option '{name}' should be specified only once")
        out.setdefault(name, []).append(value)
        i += 1
    return out


def request(root: str, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    path = os.path.join(root, SOCKET_NAME)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NucleusError(f"the Greengrass nucleus is not running (no answer on {path}: {exc})") from None
    except OSError as exc:
        raise NucleusError(f"talking to the Greengrass nucleus on {path} failed: {exc}") from None
    try:
        answer = json.loads(data.decode("utf-8"))
    except ValueError:
        raise NucleusError(f"the Greengrass nucleus sent an unreadable answer: {data[:200]!r}") from None
    if not isinstance(answer, dict):
        raise NucleusError("the Greengrass nucleus sent an unreadable answer")
    if "error" in answer:
        raise NucleusError(str(answer["error"]))
    return answer


def created_on(epoch: float) -> str:
    """Java's short US date-time style, as the real CLI prints it: ``11/23/23, 5:41 AM``."""
    t = time.localtime(epoch)
    hour = t.tm_hour % 12 or 12
    noon = "AM" if t.tm_hour < 12 else "PM"
    return f"{t.tm_mon}/{t.tm_mday}/{t.tm_year % 100:02d}, {hour}:{t.tm_min:02d} {noon}"


def format_deployment(d: dict[str, Any]) -> str:
    lines = [f"{d['deploymentId']}: {d['status']}", f"Created on: {created_on(float(d.get('createdOn', 0)))}"]
    if d.get("detailedStatus"):
        lines.append(f"Detailed Status: {d['detailedStatus']}")
    if d.get("errorStack"):
        lines.append(f"Deployment Error Stack: {', '.join(d['errorStack'])}")
    if d.get("errorTypes"):
        lines.append(f"Deployment Error Types: {', '.join(d['errorTypes'])}")
    if d.get("failureCause"):
        lines.append(f"Failure Cause: {d['failureCause']}")
    return "\n".join(lines)


def format_component(c: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Component Name: {c['componentName']}",
            f"    Version: {c['version']}",
            f"    State: {c['state']}",
            f"    Configuration: {json.dumps(c.get('configuration'), separators=(',', ':'))}",
        ]
    )


def _config_update(text: str) -> dict[str, Any]:
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as fh:
            text = fh.read()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"Update configuration parameter is not a properly formatted JSON file or a JSON string\n{exc}"
        ) from None
    if not isinstance(value, dict):
        raise UsageError("Update configuration parameter must be a JSON object")
    return value


def run(root: str, args: list[str]) -> int:
    if len(args) < 2:
        raise UsageError("Missing required subcommand")
    group, command, rest = args[0], args[1], args[2:]
    opts = parse_options(rest)
    if (group, command) == ("deployment", "create"):
        merge: dict[str, str] = {}
        for item in opts.get("--merge", []):
            name, eq, version = item.partition("=")
            if not eq or not name or not version:
                raise UsageError(f"Value for option '--merge' ({item}) should be in KEY=VALUE format")
            merge[name] = version
        payload: dict[str, Any] = {
            "op": "create",
            "recipeDir": os.path.abspath(opts["--recipeDir"][0]) if "--recipeDir" in opts else "",
            "artifactDir": os.path.abspath(opts["--artifactDir"][0]) if "--artifactDir" in opts else "",
            "merge": merge,
            "remove": opts.get("--remove", []),
            "configUpdate": _config_update(opts["--update-config"][0]) if "--update-config" in opts else None,
            "groupId": opts.get("--groupId", [""])[0],
        }
        answer = request(root, payload)
        print(f"Local deployment submitted! Deployment Id: {answer['deploymentId']}")
        return 0
    if (group, command) == ("deployment", "status"):
        if "--deploymentId" in opts:
            answer = request(root, {"op": "status", "id": opts["--deploymentId"][0]})
            print(format_deployment(answer["deployment"]))
            return 0
        found = request(root, {"op": "list_deployments"})["deployments"]  # no id: the latest one
        if not found:
            raise NucleusError("no local deployment yet")
        print(format_deployment(found[-1]))
        return 0
    if (group, command) == ("deployment", "cancel"):
        if "--deploymentId" not in opts:
            raise UsageError("Missing required option: '--deploymentId=Deployment ID'")
        print(request(root, {"op": "cancel", "id": opts["--deploymentId"][0]})["message"])
        return 0
    if (group, command) == ("deployment", "list"):
        for d in request(root, {"op": "list_deployments"})["deployments"]:
            print(format_deployment(d))
        return 0
    if (group, command) == ("component", "list"):
        comps = request(root, {"op": "list_components"})["components"]
        print("Components currently running in Greengrass:")
        for c in comps:
            print(format_component(c))
        return 0
    if (group, command) == ("component", "details"):
        if "--name" not in opts:
            raise UsageError("Missing required option: '--name=Component name'")
        print(format_component(request(root, {"op": "details", "name": opts["--name"][0]})["component"]))
        return 0
    raise UsageError(f"Unmatched arguments: {' '.join(args)}")


def main(argv: list[str] | None = None, default_root: str = "") -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = default_root or os.environ.get("GGC_ROOT_PATH", "/greengrass/v2")
    if args and args[0].startswith("--ggcRootPath"):
        _, eq, value = args.pop(0).partition("=")
        root = value if eq else (args.pop(0) if args else "")
    try:
        return run(root, args)
    except UsageError as exc:
        print(f"{exc}\n{USAGE}", file=sys.stderr)
        return 2
    except NucleusError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
