"""The kernel's side of the core's accept path, read from this machine: listen backlog and SYN retry settings.

A core that falls behind on ``accept()`` lets the kernel's accept queue fill; Linux then drops new SYNs and
the clients retransmit them 1 s, 3 s, 7 s, ... later (initial RTO 1 s, doubling, ``tcp_syn_retries`` times).
That is what gives a real reconnect storm its long tail, so the fleet model needs the queue's bound and the
retry count, and they are facts of the machine and of the broker's ``listen()`` call, not guesses: ``ss``
reports a listening socket's effective backlog (the broker's request capped at ``net.core.somaxconn``) as
its Send-Q, and the sysctls live under /proc/sys.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

PROC_SYS = Path("/proc/sys")
NETSTAT = Path("/proc/net/netstat")
#: Linux's initial retransmission timeout for a SYN (TCP_TIMEOUT_INIT), seconds.
SYN_RTO_S = 1.0
#: Linux's default ``net.ipv4.tcp_syn_retries``.
SYN_RETRIES = 6


def _sysctl_int(name: str, proc_sys: Path = PROC_SYS) -> int | None:
    try:
        return int((proc_sys / name.replace(".", "/")).read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def somaxconn(proc_sys: Path = PROC_SYS) -> int | None:
    """``net.core.somaxconn``: the cap the kernel puts on every ``listen()`` backlog (None: unreadable)."""
    return _sysctl_int("net.core.somaxconn", proc_sys)


def syn_retries(proc_sys: Path = PROC_SYS) -> int | None:
    """``net.ipv4.tcp_syn_retries``: how often a client retransmits an unanswered SYN before giving up."""
    return _sysctl_int("net.ipv4.tcp_syn_retries", proc_sys)


def abort_on_overflow(proc_sys: Path = PROC_SYS) -> bool | None:
    """``net.ipv4.tcp_abort_on_overflow``: 1 resets connections the full queue cannot take (the model
    drops them, the default 0)."""
    value = _sysctl_int("net.ipv4.tcp_abort_on_overflow", proc_sys)
    return None if value is None else bool(value)


def parse_ss_backlog(text: str, port: int) -> int | None:
    """The Send-Q column (a listener's effective backlog) of the ``ss -Hltn`` line listening on ``port``."""
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4 or cols[0] != "LISTEN":
            continue
        if cols[3].rpartition(":")[2] == str(port):
            try:
                return int(cols[2])
            except ValueError:
                return None
    return None


def listen_backlog(port: int, timeout_s: float = 10.0) -> int | None:
    """The effective backlog of the socket listening on TCP ``port`` in this network namespace (``ss``),
    or None when nothing listens there or ``ss`` is missing."""
    try:
        res = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_ss_backlog(res.stdout, port) if res.returncode == 0 else None


def parse_listen_counters(text: str) -> dict[str, int]:
    """``ListenOverflows`` and ``ListenDrops`` from /proc/net/netstat's TcpExt lines (0 when absent)."""
    lines = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
    out = {"ListenOverflows": 0, "ListenDrops": 0}
    if len(lines) >= 2:
        values = dict(zip(lines[0][1:], lines[1][1:], strict=False))
        for key in out:
            if values.get(key, "").isdigit():
                out[key] = int(values[key])
    return out


def listen_counters(netstat: Path = NETSTAT) -> dict[str, int]:
    """The namespace's SYNs dropped on a full accept queue so far (every listener in it counts)."""
    try:
        return parse_listen_counters(netstat.read_text(encoding="ascii"))
    except OSError:
        return {"ListenOverflows": 0, "ListenDrops": 0}


@dataclass(frozen=True)
class AcceptPath:
    """What the kernel does with a storm's SYNs on this machine: queue bound and client SYN retries."""

    backlog: int | None
    syn_retries: int
    syn_rto_s: float = SYN_RTO_S

    @classmethod
    def read(cls, port: int) -> AcceptPath:
        """The listener on ``port`` and this machine's sysctls (Linux defaults where unreadable)."""
        retries = syn_retries()
        return cls(backlog=listen_backlog(port), syn_retries=SYN_RETRIES if retries is None else retries)
