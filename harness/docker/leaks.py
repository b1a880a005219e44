"""Leak probe for the docker subsystem: engines (and what they hold) that outlived their harness session.

Called by ``harness.leaks.find_leaks`` with the state directory. Every engine lives in a directory under
``<state>/docker`` with its own store and network namespace and removes both on close, so any engine
directory left is a leak; its processes (API service, conmon), containers, images, networks, pods and network
namespace are listed.
"""

from __future__ import annotations

from pathlib import Path

from harness.docker.engine import engine_processes, engines_dir, list_engine, netns_exists, read_engine_file


def find_leaks(base: Path) -> list[str]:
    out: list[str] = []
    d = engines_dir(base)
    if not d.exists():
        return out
    out += [f"docker process {p}" for p in engine_processes(d)]  # also of engines whose directory is gone
    for root in sorted(d.glob("engine-*")):
        info = read_engine_file(root)
        out.append(f"docker engine directory {root} (owner pid {info.get('owner', '?')})")
        for kind, names in list_engine(root).items():
            out += [f"docker {kind} {name} (engine {root.name})" for name in names]
        netns = str(info.get("netns", ""))
        if netns_exists(netns):
            out.append(f"network namespace {netns} (engine {root.name})")
    return out
