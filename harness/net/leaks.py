"""Leak probe for ``harness.leaks``: namespaces, veths (with their qdiscs), nft tables and slot files left by
network topologies of one state directory.

Kernel objects carry their slot in their names (``ggn-<slot>-<pid>``, ``gg<slot>fh``); the slot file in
/run/gg-harness-net says which state directory owns it, so parallel sessions never report each other's.
An object named like ours without any slot file is reported too: nobody can collect it otherwise.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import InfraError
from harness.net.topology import (
    ALLOC_DIR,
    harness_interfaces,
    harness_netns,
    read_allocations,
    run_cmd,
    slot_of_interface,
    slot_of_netns,
)


def _root_nft_tables() -> list[str]:
    try:
        out = run_cmd(["nft", "list", "tables"])
    except InfraError:  # nft missing: nothing of ours can exist either
        return []
    return [line for line in out.splitlines() if " ggn" in line]


def find_leaks(base: Path) -> list[str]:
    base_s = str(Path(base).resolve())
    allocs = {a.slot: a for a in read_allocations()}
    mine = {s for s, a in allocs.items() if a.base == base_s}
    out: list[str] = []
    for ns in harness_netns():
        slot = slot_of_netns(ns)
        if slot in mine or slot not in allocs:
            out.append(f"network namespace {ns}" + ("" if slot in mine else " (no owner record)"))
    for name in harness_interfaces():
        slot = slot_of_interface(name)
        if slot in mine or slot not in allocs:
            try:
                qdisc = run_cmd(["tc", "qdisc", "show", "dev", name]).strip()
            except InfraError:
                continue  # gone between the listing and now (a wire exiting)
            out.append(f"veth {name} (qdisc: {qdisc or 'none'})")
    out += [f"nft table in the root namespace: {t}" for t in _root_nft_tables()]
    out += [
        f"network slot {ALLOC_DIR}/{s:04x} (pid {allocs[s].pid}, {allocs[s].netns})" for s in sorted(mine)
    ]
    return out
