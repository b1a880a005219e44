"""The harness side of the userspace wire (``harness.net.wire``): start it for one link, hand it specs, and
route the link's two addresses through it while impaired and back over the bare veth when cleared.

Routes are /32 host routes over the TUN ends with the link's own source addresses, so established TCP
connections keep their addresses and survive the switch in both directions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from harness.errors import InfraError
from harness.net.impair import Impairment
from harness.net.topology import Link, Topology, run_cmd

WIRE = Path(__file__).with_name("wire.py")
START_TIMEOUT_S = 15.0


def netem_available(dev: str) -> bool:
    """Whether the kernel has sch_netem: try it on ``dev`` (a harness veth) and take it off again."""
    res = subprocess.run(
        ["tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if res.returncode != 0:
        return False
    subprocess.run(["tc", "qdisc", "del", "dev", dev, "root"], capture_output=True, timeout=30, check=False)
    return True


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    out: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    t = threading.Thread(target=lambda: out.append(stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0].strip() if out else ""


class UserspaceWire:
    """One link's wire process; ``apply(spec)`` routes through it, ``bypass()`` routes around it."""

    def __init__(self, topology: Topology, link: Link, seed: int = 0) -> None:
        from harness.net.wire import open_tun

        self.topology = topology
        self.link = link
        self.routed = False
        self.counters: dict[str, Any] = {}
        host_fd = open_tun(link.host_tun)
        try:
            self.proc = subprocess.Popen(
                topology.ns_argv([sys.executable, "-I", str(WIRE), str(host_fd), link.core_tun, str(seed)]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                pass_fds=(host_fd,),
            )
        finally:
            os.close(host_fd)  # the wire holds it now: the TUN device lives exactly as long as the wire
        line = _read_line(self.proc, START_TIMEOUT_S)
        if line != "READY":
            self.close()
            raise InfraError(f"the userspace wire of link {link.name} did not start (said {line!r})")
        run_cmd(["ip", "link", "set", link.host_tun, "up"])
        topology.ns(["ip", "link", "set", link.core_tun, "up"])

    def apply(self, spec: Impairment) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(spec.to_json()) + "\n")
        self.proc.stdin.flush()
        if _read_line(self.proc, START_TIMEOUT_S) != "OK":
            raise InfraError(f"the userspace wire of link {self.link.name} did not take the spec {spec}")
        if not self.routed:
            lk = self.link
            run_cmd(["ip", "route", "replace", f"{lk.core_addr}/32", "dev", lk.host_tun, "src", lk.host_addr])
            self.topology.ns(
                ["ip", "route", "replace", f"{lk.host_addr}/32", "dev", lk.core_tun, "src", lk.core_addr]
            )
            self.routed = True

    def bypass(self) -> None:
        """Route the link over its veth again (the wire stays, idle)."""
        if self.routed:
            lk = self.link
            run_cmd(["ip", "route", "del", f"{lk.core_addr}/32", "dev", lk.host_tun])
            self.topology.ns(["ip", "route", "del", f"{lk.host_addr}/32", "dev", lk.core_tun])
            self.routed = False

    def close(self) -> None:
        """End the wire (EOF on its stdin); its counters are kept in ``counters``."""
        try:
            self.bypass()
        except InfraError:
            pass
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        line = _read_line(self.proc, 5.0) if self.proc.poll() is None else ""
        try:
            self.counters = json.loads(line) if line.startswith("{") else {}
        except ValueError:
            self.counters = {}
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
