"""The link between the fleet and the core: a network namespace for the core, joined by two veth pairs.

::

    root namespace (fleet, cloud side)            core namespace ggn-<slot>-<pid>
    ggXXXXfh 10.213.S.1/30  <-- fleet link -->  ggXXXXfc 10.213.S.2/30   core broker :8883
    ggXXXXch 10.213.S.5/30  <-- cloud link -->  ggXXXXcc 10.213.S.6/30   core's bridge to the cloud broker

Two links rather than one so "fleet <-> core" and "core <-> cloud" can be impaired and cut separately.
Addresses come from 10.213.0.0/16, eight per slot (slot = 0..8191); a slot is claimed by creating
``/run/gg-harness-net/<slot>`` exclusively, holding the owner's pid and state directory, so parallel xdist
workers never share addresses or names, and a killed run's leftovers are recognisable (owner pid dead) and
collected by the next topology. Everything is deleted on exit, on failure and on Ctrl-C: deleting the
namespace deletes its veth ends (and with them the peers, their qdiscs and the namespace's nft tables).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from harness.errors import InfraError
from harness.paths import state_dir

ALLOC_DIR = Path("/run/gg-harness-net")
NETNS_DIR = Path("/run/netns")
NS_PREFIX = "ggn-"
IF_PREFIX = "gg"
SLOTS = 8192
ADDRESS_RANGE = "10.213.0.0/16"
CMD_TIMEOUT_S = 30.0
LINKS = ("fleet", "cloud")
#: veth host/core ends (fh fc ch cc) and the userspace wire's TUN ends (ft fn ct cn), per link.
IF_SUFFIXES = ("fh", "fc", "ch", "cc", "ft", "fn", "ct", "cn")


def run_cmd(argv: Sequence[str], *, timeout: float = CMD_TIMEOUT_S, stdin: str | None = None) -> str:
    """Run one ip/tc/nft command; a failure is an InfraError with the command and its stderr."""
    try:
        res = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise InfraError(f"`{' '.join(argv)}` did not finish within {timeout:g} s") from None
    except FileNotFoundError:
        raise InfraError(f"{argv[0]} is not installed (apt-get install iproute2 nftables)") from None
    if res.returncode != 0:
        raise InfraError(f"`{' '.join(argv)}` failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def slot_address(slot: int, host: int) -> str:
    """Address ``host`` (0..7) of a slot's eight in 10.213.0.0/16."""
    n = slot * 8 + host
    return f"10.213.{n >> 8}.{n & 0xFF}"


@dataclass(frozen=True)
class Link:
    """One veth pair: the root-namespace end (``host_*``) and the core-namespace end (``core_*``)."""

    name: str
    host_if: str
    core_if: str
    host_addr: str
    core_addr: str
    prefix_len: int = 30

    @property
    def host_tun(self) -> str:
        """The userspace wire's TUN end in the root namespace (see ``harness.net.wire``)."""
        return self.host_if[:-1] + "t"

    @property
    def core_tun(self) -> str:
        return self.core_if[:-1] + "n"


@dataclass(frozen=True)
class Allocation:
    """What a slot file says: who owns the slot."""

    slot: int
    pid: int
    base: str
    netns: str

    @property
    def owner_alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def read_allocations() -> list[Allocation]:
    out: list[Allocation] = []
    if not ALLOC_DIR.is_dir():
        return out
    for f in ALLOC_DIR.iterdir():
        try:
            d = json.loads(f.read_text())
            out.append(Allocation(int(d["slot"]), int(d["pid"]), str(d["base"]), str(d["netns"])))
        except (OSError, ValueError, KeyError):
            continue
    return out


def names_of(slot: int) -> tuple[str, dict[str, Link]]:
    """The namespace-name stem and links of a slot (interface names stay within 15 characters)."""
    stem = f"{IF_PREFIX}{slot:04x}"
    links = {
        "fleet": Link("fleet", f"{stem}fh", f"{stem}fc", slot_address(slot, 1), slot_address(slot, 2)),
        "cloud": Link("cloud", f"{stem}ch", f"{stem}cc", slot_address(slot, 5), slot_address(slot, 6)),
    }
    return stem, links


def slot_of_interface(name: str) -> int | None:
    if not (name.startswith(IF_PREFIX) and len(name) == 8 and name[6:] in IF_SUFFIXES):
        return None
    try:
        return int(name[2:6], 16)
    except ValueError:
        return None


def slot_of_netns(name: str) -> int | None:
    if not name.startswith(NS_PREFIX):
        return None
    try:
        return int(name.split("-")[1], 16)
    except (IndexError, ValueError):
        return None


def harness_netns() -> list[str]:
    return (
        sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NS_PREFIX))
        if NETNS_DIR.is_dir()
        else []
    )


def harness_interfaces() -> list[str]:
    """Root-namespace interfaces named like ours (``ggSSSSfh``...)."""
    out = run_cmd(["ip", "-o", "link", "show"])
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if slot_of_interface(name) is not None:
                names.append(name)
    return names


def destroy_slot(slot: int, netns: str | None) -> None:
    """Delete a slot's namespace and root-side veths (whatever still exists), then free the slot."""
    _, links = names_of(slot)
    if netns and (NETNS_DIR / netns).exists():
        subprocess.run(
            ["ip", "netns", "delete", netns], capture_output=True, timeout=CMD_TIMEOUT_S, check=False
        )
    present = set(harness_interfaces())
    for link in links.values():
        if link.host_if in present:
            subprocess.run(
                ["ip", "link", "delete", link.host_if],
                capture_output=True,
                timeout=CMD_TIMEOUT_S,
                check=False,
            )
    (ALLOC_DIR / f"{slot:04x}").unlink(missing_ok=True)


def gc_stale() -> list[str]:
    """Collect slots whose owner died (a SIGKILLed harness); returns the namespaces removed."""
    removed = []
    for a in read_allocations():
        if not a.owner_alive:
            destroy_slot(a.slot, a.netns)
            removed.append(a.netns)
    return removed


_live: set[Topology] = set()
_live_lock = threading.Lock()


def _close_all_at_exit() -> None:
    with _live_lock:
        live = list(_live)
    for t in live:
        t.close()


atexit.register(_close_all_at_exit)


class Topology:
    """The core's namespace and its two links. A context manager; ``close()`` is idempotent."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = (base or state_dir()).resolve()
        self.slot: int | None = None
        self.netns = ""
        self.links: dict[str, Link] = {}
        #: Called first by ``close()`` (a ``NetControl`` ends its wires and timers here).
        self.on_close: list[Callable[[], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Topology:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _claim(self) -> int:
        ALLOC_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        start = (os.getpid() * 7919) % SLOTS
        for i in range(SLOTS):
            slot = (start + i) % SLOTS
            path = ALLOC_DIR / f"{slot:04x}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            self.netns = f"{NS_PREFIX}{slot:04x}-{os.getpid()}"
            with os.fdopen(fd, "w") as fh:
                json.dump({"slot": slot, "pid": os.getpid(), "base": str(self.base), "netns": self.netns}, fh)
            return slot
        raise InfraError(f"no free network slot in {ALLOC_DIR} ({SLOTS} in use)")

    def create(self) -> None:
        gc_stale()
        self.slot = self._claim()
        with _live_lock:
            _live.add(self)
        _, self.links = names_of(self.slot)
        run_cmd(["ip", "netns", "add", self.netns])
        self.ns(["ip", "link", "set", "lo", "up"])
        for link in self.links.values():
            run_cmd(
                [
                    "ip",
                    "link",
                    "add",
                    link.host_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    link.core_if,
                    "netns",
                    self.netns,
                ]
            )
            run_cmd(["ip", "addr", "add", f"{link.host_addr}/{link.prefix_len}", "dev", link.host_if])
            run_cmd(["ip", "link", "set", link.host_if, "up"])
            self.ns(["ip", "addr", "add", f"{link.core_addr}/{link.prefix_len}", "dev", link.core_if])
            self.ns(["ip", "link", "set", link.core_if, "up"])
        self._wait_up()

    def _wait_up(self, timeout: float = 10.0) -> None:
        """Wait until the fresh addresses leave duplicate-address detection (IPv4: carrier up)."""
        deadline = time.monotonic() + timeout
        for link in self.links.values():
            while "LOWER_UP" not in run_cmd(["ip", "link", "show", link.host_if]):
                if time.monotonic() > deadline:
                    raise InfraError(f"veth {link.host_if} did not come up within {timeout:g} s")
                time.sleep(0.05)

    def close(self) -> None:
        while self.on_close:
            try:
                self.on_close.pop()()
            except InfraError:
                pass  # the namespace goes anyway, and everything in it
        if self.slot is not None:
            destroy_slot(self.slot, self.netns)
            self.slot = None
        with _live_lock:
            _live.discard(self)

    # -- use ---------------------------------------------------------------------------------------
    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    def ns_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the core's namespace (nsenter: no /sys remount, unlike ``ip netns exec``)."""
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]

    def ns(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = CMD_TIMEOUT_S) -> str:
        return run_cmd(self.ns_argv(argv), stdin=stdin, timeout=timeout)

    def link(self, name: str) -> Link:
        if name not in self.links:
            raise InfraError(f"no link {name!r}; links: {', '.join(LINKS)}")
        return self.links[name]

    def describe(self) -> dict[str, object]:
        return {
            "netns": self.netns,
            "address_range": ADDRESS_RANGE,
            "links": {n: vars(link) for n, link in self.links.items()},
        }
