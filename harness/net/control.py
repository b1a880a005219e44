"""Impair and cut the links of a :class:`Topology` during a run, and record what was done and when.

Impairment = ``tc netem`` on both ends of a link (each direction gets the spec); on a kernel without
sch_netem the same spec runs in the userspace wire (``harness.net.wire``), and the backend used is recorded
with every event. A partition = nftables rules
in the core's namespace (table ``inet ggn``, so it vanishes with the namespace and never touches the host's
rules): ``drop`` loses every packet silently (a dead network: connections notice only by keep-alive),
``reject`` answers with TCP resets (a link that refuses: attempts fail at once).
``partition(link, seconds)`` heals by itself after the duration on a timer thread; every change is a
:class:`NetEvent` with its Unix time, turned into measurement records for the report.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import InfraError, InputError
from harness.net.impair import Impairment
from harness.net.topology import LINKS, Topology, run_cmd
from harness.net.wire_link import UserspaceWire, netem_available
from harness.records import Measurement

CutMode = Literal["drop", "reject"]
CUT_MODES: tuple[str, ...] = ("drop", "reject")
NFT_TABLE = "ggn"
MAX_PARTITION_S = 600.0


@dataclass(frozen=True)
class NetEvent:
    """One change to the network: ``impair``, ``clear``, ``cut`` or ``heal`` of a link."""

    at_unix: float
    action: str
    link: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"at_unix": round(self.at_unix, 3), "action": self.action, "link": self.link, **self.detail}

    def measurement(self) -> Measurement:
        """The event in the locust request-event shape (``request_type`` net), beside the fleet's records."""
        return Measurement(
            request_type="net",
            name=f"{self.action} {self.link}",
            response_time=0.0,
            context={"t": round(self.at_unix, 3), **self.detail},
        )


class NetControl:
    """Changes impairments and partitions of one topology; thread-safe, every change recorded."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.events: list[NetEvent] = []
        self.impaired: dict[str, Impairment] = {}
        self.cut_links: dict[str, CutMode] = {}
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self._netem: bool | None = None
        self.wires: dict[str, UserspaceWire] = {}
        self.wire_counters: dict[str, Any] = {}
        topology.on_close.append(self.close)

    @property
    def backend(self) -> str:
        """``netem`` when the kernel has it, else ``userspace-wire``."""
        if self._netem is None:
            self._netem = netem_available(self.topology.link("fleet").host_if)
        return "netem" if self._netem else "userspace-wire"

    def _record(self, action: str, link: str, **detail: Any) -> NetEvent:
        ev = NetEvent(time.time(), action, link, detail)
        self.events.append(ev)
        return ev

    @staticmethod
    def _check_link(link: str) -> None:
        if link not in LINKS:
            raise InputError(f"network link {link!r}: allowed: {', '.join(LINKS)}")

    # -- netem ------------------------------------------------------------------------------------
    def impair(self, link: str, spec: Impairment | str) -> NetEvent:
        """Apply (or change) ``spec`` on both directions of ``link``; ``none`` clears it."""
        self._check_link(link)
        if isinstance(spec, str):
            spec = Impairment.parse(spec)
        if spec.is_none:
            return self.clear(link)
        lk = self.topology.link(link)
        args = spec.netem_args()
        with self._lock:
            if self.backend == "netem":
                run_cmd(["tc", "qdisc", "replace", "dev", lk.host_if, "root", "netem", *args])
                self.topology.ns(["tc", "qdisc", "replace", "dev", lk.core_if, "root", "netem", *args])
            else:
                if link not in self.wires:
                    self.wires[link] = UserspaceWire(self.topology, lk, seed=len(self.events))
                self.wires[link].apply(spec)
            self.impaired[link] = spec
            return self._record("impair", link, spec=str(spec), backend=self.backend, netem=" ".join(args))

    def clear(self, link: str) -> NetEvent:
        self._check_link(link)
        lk = self.topology.link(link)
        with self._lock:
            if link in self.impaired:
                if link in self.wires:
                    self.wires[link].bypass()
                else:
                    run_cmd(["tc", "qdisc", "del", "dev", lk.host_if, "root"])
                    self.topology.ns(["tc", "qdisc", "del", "dev", lk.core_if, "root"])
                del self.impaired[link]
            return self._record("clear", link)

    def qdiscs(self, link: str) -> str:
        """``tc qdisc show`` of both ends (evidence for reports)."""
        lk = self.topology.link(link)
        host = run_cmd(["tc", "qdisc", "show", "dev", lk.host_if]).strip()
        core = self.topology.ns(["tc", "qdisc", "show", "dev", lk.core_if]).strip()
        return f"{lk.host_if}: {host}\n{lk.core_if}: {core}"

    # -- partitions -------------------------------------------------------------------------------
    def _ruleset(self) -> str:
        rules_in, rules_out = [], []
        for name, mode in sorted(self.cut_links.items()):
            lk = self.topology.link(name)
            ifs = f'{{ "{lk.core_if}", "{lk.core_tun}" }}'  # the veth and the wire's TUN end
            if mode == "reject":
                rules_in.append(f"iifname {ifs} meta l4proto tcp reject with tcp reset")
                rules_out.append(f"oifname {ifs} tcp flags & rst == rst accept")
            rules_in.append(f"iifname {ifs} drop")
            rules_out.append(f"oifname {ifs} drop")
        body_in = "\n".join(f"    {r}" for r in rules_in)
        body_out = "\n".join(f"    {r}" for r in rules_out)
        return (
            f"table inet {NFT_TABLE} {{}}\ndelete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n"
            f"  chain input {{\n    type filter hook input priority 0; policy accept;\n{body_in}\n  }}\n"
            f"  chain output {{\n    type filter hook output priority 0; policy accept;\n{body_out}\n  }}\n"
            "}\n"
        )

    def cut(self, link: str, mode: CutMode = "drop", *, kill_established: bool = False) -> NetEvent:
        """Partition ``link`` until :meth:`heal`. ``kill_established`` also aborts the core's TCP
        connections over it at that instant (every peer sees a reset at once, like a link flap)."""
        self._check_link(link)
        if mode not in CUT_MODES:
            raise InputError(f"partition mode {mode!r}: allowed: {', '.join(CUT_MODES)}")
        with self._lock:
            self.cut_links[link] = mode
            self.topology.ns(["nft", "-f", "-"], stdin=self._ruleset())
            if kill_established:
                lk = self.topology.link(link)
                self.topology.ns(["ss", "-K", "-t", "dst", lk.host_addr])
            return self._record("cut", link, mode=mode, killed=kill_established)

    def heal(self, link: str) -> NetEvent:
        self._check_link(link)
        with self._lock:
            self.cut_links.pop(link, None)
            self.topology.ns(["nft", "-f", "-"], stdin=self._ruleset())
            return self._record("heal", link)

    def partition(
        self, link: str, seconds: float, mode: CutMode = "drop", *, kill_established: bool = False
    ) -> threading.Timer:
        """Cut ``link`` now and heal it after ``seconds`` (on a timer thread; returns the timer)."""
        if not 0 < seconds <= MAX_PARTITION_S:
            raise InputError(f"partition duration {seconds:g} s: allowed 0 < seconds <= {MAX_PARTITION_S:g}")
        self.cut(link, mode, kill_established=kill_established)
        timer = threading.Timer(seconds, self._heal_quietly, args=(link,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return timer

    def _heal_quietly(self, link: str) -> None:
        try:
            self.heal(link)
        except InfraError:
            pass  # the topology is being torn down

    # -- counters ---------------------------------------------------------------------------------
    def tcp_counters(self) -> dict[str, int]:
        """TCP counters of the core's namespace (/proc/net/snmp and netstat): segments, retransmissions."""
        out: dict[str, int] = {}
        for table in ("snmp", "netstat"):
            text = self.topology.ns(["cat", f"/proc/net/{table}"])
            lines = text.splitlines()
            for head, vals in zip(lines[::2], lines[1::2], strict=False):
                kind, _, names = head.partition(":")
                if kind not in ("Tcp", "TcpExt"):
                    continue
                for k, v in zip(names.split(), vals.partition(":")[2].split(), strict=False):
                    if k in (
                        "OutSegs",
                        "InSegs",
                        "RetransSegs",
                        "TCPLostRetransmit",
                        "TCPTimeouts",
                        "TCPFastRetrans",
                        "TCPSynRetrans",
                        "ActiveOpens",
                        "PassiveOpens",
                    ):
                        out[k] = int(v)
        return out

    def close(self) -> None:
        """Stop pending heal timers and clear everything (the topology may be deleted right after)."""
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        with self._lock:
            for link in list(self.impaired):
                try:
                    self.clear(link)
                except InfraError:
                    pass
            for link in list(self.cut_links):
                try:
                    self.heal(link)
                except InfraError:
                    pass
            for link, wire in list(self.wires.items()):
                wire.close()
                self.wire_counters[link] = wire.counters
            self.wires.clear()

    def report(self) -> dict[str, Any]:
        """What the report records: the topology, what is applied now, and every event with its time."""
        return {
            **self.topology.describe(),
            "backend": self.backend,
            "impaired": {k: str(v) for k, v in self.impaired.items()},
            "wire_counters": self.wire_counters,
            "cut": dict(self.cut_links),
            "events": [e.to_json() for e in self.events],
        }
