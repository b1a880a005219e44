"""A userspace wire: two TUN devices and this process between them, delaying, dropping, duplicating,
reordering and rate-limiting packets as an impairment spec says (netem's model, in userspace).

Why: ``tc netem`` needs the kernel's sch_netem, which some kernels (this machine's among them) do not have.
The harness then routes a link's traffic through this wire instead of the veth while an impairment is set,
and back to the bare veth when it is cleared (so an unimpaired run has no userspace hop at all). Both ends
run real kernel TCP stacks; only the wire between them is ours.

Run as ``nsenter --net=<core ns> python -I wire.py HOST_FD CORE_IF``: HOST_FD is a TUN device the parent
opened in the root namespace; this process opens CORE_IF (a new TUN in the core's namespace), prints
``READY`` and forwards. Each stdin line is a new spec (JSON, the fields of ``Impairment``); EOF on stdin (the
harness ended, however) stops it, and both TUN devices vanish with their file descriptors. On exit it prints
its counters as one JSON line. Stdlib only.
"""

from __future__ import annotations

import fcntl
import heapq
import json
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_QUEUE = 10000
MAX_PACKET = 65536


def open_tun(name: str) -> int:
    """Create (or attach to) the TUN device ``name`` in this process's network namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Direction:
    """One direction of the wire: a queue of packets ordered by the time they leave."""

    def __init__(self, name: str, out_fd: int, rng: random.Random) -> None:
        self.name = name
        self.out_fd = out_fd
        self.rng = rng
        self.queue: list[tuple[float, int, bytes]] = []
        self.seq = 0
        self.link_free = 0.0
        self.counts = {"in": 0, "out": 0, "lost": 0, "duplicated": 0, "reordered": 0, "overflow": 0}

    def push(self, pkt: bytes, spec: dict[str, float], now: float) -> None:
        self.counts["in"] += 1
        if spec.get("loss_pct", 0) and self.rng.random() * 100 < spec["loss_pct"]:
            self.counts["lost"] += 1
            return
        copies = 1
        if spec.get("duplicate_pct", 0) and self.rng.random() * 100 < spec["duplicate_pct"]:
            copies = 2
            self.counts["duplicated"] += 1
        for _ in range(copies):
            if len(self.queue) >= MAX_QUEUE:
                self.counts["overflow"] += 1
                return
            delay = spec.get("delay_ms", 0.0) / 1000.0
            if spec.get("reorder_pct", 0) and self.rng.random() * 100 < spec["reorder_pct"]:
                delay = 0.0  # netem's reorder: this packet goes at once, ahead of the delayed ones
                self.counts["reordered"] += 1
            elif spec.get("jitter_ms", 0):
                delay = max(0.0, delay + self.rng.gauss(0.0, spec["jitter_ms"] / 1000.0))
            due = now + delay
            rate = spec.get("rate_kbit", 0)
            if rate:
                self.link_free = max(self.link_free, due) + len(pkt) * 8 / (rate * 1000.0)
                due = self.link_free
            self.seq += 1
            heapq.heappush(self.queue, (due, self.seq, pkt))

    def flush(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, _, pkt = heapq.heappop(self.queue)
            try:
                os.write(self.out_fd, pkt)
                self.counts["out"] += 1
            except BlockingIOError:
                self.counts["overflow"] += 1
            except OSError:  # the receiving device is down (EIO): the packet is lost, like on a real wire
                self.counts["lost"] += 1

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None


def main() -> int:
    host_fd = int(sys.argv[1])
    core_fd = open_tun(sys.argv[2])
    os.set_blocking(host_fd, False)
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else None)
    to_core = Direction("to_core", core_fd, rng)
    to_host = Direction("to_host", host_fd, rng)
    spec: dict[str, float] = {}
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    pending = b""
    print("READY", flush=True)
    while True:
        now = time.monotonic()
        dues = [d for d in (to_core.next_due(), to_host.next_due()) if d is not None]
        timeout = max(0.0, min(dues) - now) if dues else 1.0
        ready, _, _ = select.select([host_fd, core_fd, stdin], [], [], timeout)
        now = time.monotonic()
        for fd in ready:
            if fd == stdin:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    print(json.dumps({"to_core": to_core.counts, "to_host": to_host.counts}), flush=True)
                    return 0
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        spec = {k: float(v) for k, v in json.loads(line).items()}
                        print("OK", flush=True)
                continue
            src, direction = (host_fd, to_core) if fd == host_fd else (core_fd, to_host)
            for _ in range(64):  # drain a burst, bounded so the other side is served too
                try:
                    pkt = os.read(src, MAX_PACKET)
                except BlockingIOError:
                    break
                direction.push(pkt, spec, now)
        to_core.flush(now)
        to_host.flush(now)


if __name__ == "__main__":
    sys.exit(main())
