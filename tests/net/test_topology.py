"""Real namespaces, veths, TUN wires and nft rules: built, impaired, cut, healed and always torn down.

Each test uses its own state directory, so the leak probe sees exactly what the test made; a SIGKILLed owner's
topology is reported and then collected by the next one; Ctrl-C tears everything down.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.net import NetControl, Topology
from harness.net.leaks import find_leaks
from harness.net.topology import gc_stale, harness_interfaces, harness_netns

SERVER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7777)); s.listen(64)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.recv(1); c.send(b'y'); c.close()\n"
)


def round_trip(addr: str, timeout: float = 2.0) -> tuple[str, float]:
    """TCP connect + one byte each way; (outcome, milliseconds)."""
    t = time.monotonic()
    try:
        with socket.create_connection((addr, 7777), timeout=timeout) as s:
            s.sendall(b"x")
            s.recv(1)
        out = "ok"
    except OSError as exc:
        out = type(exc).__name__
    return out, (time.monotonic() - t) * 1000


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[Topology]:
    with Topology(tmp_path) as t:
        server = subprocess.Popen(t.ns_argv([sys.executable, "-c", SERVER]))
        try:
            deadline = time.monotonic() + 10
            while round_trip(t.link("fleet").core_addr, 0.5)[0] != "ok" and time.monotonic() < deadline:
                time.sleep(0.05)
            yield t
        finally:
            server.kill()
            server.wait(timeout=10)
    assert find_leaks(tmp_path) == []


def test_topology_is_tracked_and_torn_down(tmp_path: Path) -> None:
    with Topology(tmp_path) as t:
        leaks = find_leaks(tmp_path)
        assert f"network namespace {t.netns}" in leaks
        assert any(line.startswith(f"veth {t.link('fleet').host_if}") for line in leaks)
        assert not any(t.netns in line for line in find_leaks(tmp_path / "another-session"))
        addrs = t.ns(["ip", "-o", "-4", "addr", "show"])
        assert t.link("fleet").core_addr in addrs and t.link("cloud").core_addr in addrs
    assert t.netns not in harness_netns()
    assert find_leaks(tmp_path) == []


def test_impairment_shifts_latency_and_clearing_restores_it(topo: Topology) -> None:
    ctl = NetControl(topo)
    addr = topo.link("fleet").core_addr
    base = min(round_trip(addr)[1] for _ in range(3))
    ev = ctl.impair("fleet", "delay=40ms")
    impaired = min(round_trip(addr)[1] for _ in range(3))
    ctl.clear("fleet")
    after = min(round_trip(addr)[1] for _ in range(3))
    ctl.close()
    # connect + one exchange = two round trips = four one-way delays
    assert impaired >= 160, f"40 ms each way gave a {impaired:.1f} ms exchange"
    assert impaired < 160 + 150
    assert after < 40 and base < 40
    assert ev.detail["backend"] in ("netem", "userspace-wire")
    assert [e.action for e in ctl.events] == ["impair", "clear"]
    m = ctl.events[0].measurement()
    assert m.request_type == "net" and m.name == "impair fleet" and m.context["spec"] == "delay=40ms"


def test_loss_and_duplication_are_counted(topo: Topology) -> None:
    ctl = NetControl(topo)
    ctl.impair("fleet", "loss=30%,duplicate=20%")
    for _ in range(5):
        round_trip(topo.link("fleet").core_addr, 5)
    ctl.close()
    if ctl.backend == "userspace-wire":
        counts = ctl.wire_counters["fleet"]["to_core"]
        assert counts["lost"] > 0 and counts["duplicated"] > 0, counts


def test_partitions_reject_drop_and_heal_by_timer(topo: Topology) -> None:
    ctl = NetControl(topo)
    addr = topo.link("fleet").core_addr
    ctl.cut("fleet", "reject")
    assert round_trip(addr)[0] == "ConnectionRefusedError"
    ctl.cut("fleet", "drop")
    assert round_trip(addr, 1.0)[0] == "TimeoutError"
    ctl.heal("fleet")
    assert round_trip(addr)[0] == "ok"
    timer = ctl.partition("fleet", 0.5, "reject")
    assert round_trip(addr)[0] == "ConnectionRefusedError"
    timer.join(5)
    assert round_trip(addr)[0] == "ok"
    assert [e.action for e in ctl.events] == ["cut", "cut", "heal", "cut", "heal"]
    # the cloud link is separate: cutting it leaves the fleet link alone
    ctl.cut("cloud", "drop")
    assert round_trip(addr)[0] == "ok"
    ctl.close()
    assert "drop" not in topo.ns(["nft", "list", "ruleset"])  # healed: the table is empty


def test_bad_link_and_mode_are_input_errors(topo: Topology) -> None:
    ctl = NetControl(topo)
    with pytest.raises(InputError, match="network link 'core': allowed: fleet, cloud"):
        ctl.cut("core")
    with pytest.raises(InputError, match="partition mode 'blackhole': allowed: drop, reject"):
        ctl.cut("fleet", "blackhole")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="allowed 0 < seconds"):
        ctl.partition("fleet", 0)


OWNER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from harness.net import NetControl, Topology\n"
    "t = Topology(Path(sys.argv[1]))\n"
    "with t:\n"
    "    NetControl(t).impair('fleet', 'delay=5ms')\n"
    "    print(t.netns, flush=True)\n"
    "    time.sleep(60)\n"
)


def _owner(base: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(base)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_ctrl_c_tears_everything_down(tmp_path: Path) -> None:
    proc, netns = _owner(tmp_path)
    assert netns in harness_netns()
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=30)
    assert netns not in harness_netns()
    assert find_leaks(tmp_path) == []


def test_killed_owner_is_reported_then_collected(tmp_path: Path) -> None:
    proc, netns = _owner(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    leaks = find_leaks(tmp_path)
    assert f"network namespace {netns}" in leaks, leaks
    slot = netns.split("-")[1]
    assert any(f"veth gg{slot}fh" in line for line in leaks)
    assert netns in gc_stale()
    assert find_leaks(tmp_path) == []
    assert not any(name.startswith(f"gg{slot}") for name in harness_interfaces())
