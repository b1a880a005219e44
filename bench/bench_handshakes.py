"""Benchmark: mutual-TLS MQTT connects per second the reference core accepts, per profile.

Each connect is a full TLS 1.2 handshake with a client certificate, an MQTT CONNECT and the broker's CONNACK
(the plugin checks client id and policy), then a DISCONNECT. Clients run on the host in threads; the broker
runs inside the target, so on emulated profiles it is ARM code under qemu-user. The peer measured in the
same run is native-x86_64; the ratio says how much emulation slows a core.

    python bench/bench_handshakes.py [--seconds 10] [--threads 8] [--profile NAME ...]
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

from harness.cloud.api import Cloud
from harness.core.reference import ReferenceCore
from harness.profiles import find_profile
from harness.pytest_core import provision_fleet
from harness.targets.qemu_user import QemuUserTarget

PROFILES = ["native-x86_64", "qemu-armv6l", "qemu-armv7l", "qemu-aarch64"]


def connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x1e"
    body = var + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def one_connect(ctx: ssl.SSLContext, host: str, port: int, packet: bytes) -> float:
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=30) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(packet)
        ack = tls.recv(4)
        if ack[:2] != b"\x20\x02" or ack[3] != 0:
            raise ConnectionError(f"CONNACK refused: {ack!r}")
        tls.sendall(b"\xe0\x00")
    return time.perf_counter() - start


def measure(name: str, seconds: float, threads: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as state:
        cloud = Cloud(Path(state))
        target = QemuUserTarget(find_profile(name))
        core = None
        try:
            target.power_on()
            core_name = "bench-core"
            fleet = provision_fleet(cloud, core_name)
            core = ReferenceCore(target, target.profile, cloud, core_name)
            core.start()
            ep = core.endpoints()[0]
            thing = fleet.sensors[0]
            files = cloud.device_files(thing)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cadata=cloud.core_ca(core_name).pem)
            ctx.check_hostname = False
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(files.cert_path), str(files.key_path))
            packet = connect_packet(thing)
            one_connect(ctx, ep.host, ep.port, packet)  # warm-up
            latencies: list[float] = []
            lock = threading.Lock()
            stop = time.monotonic() + seconds

            def worker() -> None:
                while time.monotonic() < stop:
                    dt = one_connect(ctx, ep.host, ep.port, packet)
                    with lock:
                        latencies.append(dt)

            pool = [threading.Thread(target=worker) for _ in range(threads)]
            start = time.monotonic()
            for t in pool:
                t.start()
            for t in pool:
                t.join(seconds + 60)
            elapsed = time.monotonic() - start
            return len(latencies) / elapsed, statistics.median(latencies) * 1000, len(latencies)
        finally:
            if core is not None:
                core.close()
            target.close()
            cloud.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--profile", action="append")
    args = ap.parse_args()
    names = args.profile or PROFILES
    results = {n: measure(n, args.seconds, args.threads) for n in names}
    base = results.get("native-x86_64", next(iter(results.values())))[0]
    print(f"{'profile':16} {'connects/s':>11} {'x native':>9} {'median ms':>10} {'count':>7}")
    for n, (rate, med, count) in results.items():
        print(f"{n:16} {rate:11.1f} {rate / base:9.2f} {med:10.1f} {count:7d}")


if __name__ == "__main__":
    from harness.errors import interrupt_on_sigterm

    interrupt_on_sigterm()
    main()
