"""Benchmark: the fleet's asyncio engine vs locust + paho (locust.contrib.mqtt) and vs the real AWS IoT
Device SDK client (awscrt), same devices, same core, same run.

Both generators run the same plan against the reference core on native-x86_64: N devices with their own
certificates connect with mutual TLS at ``--connect-rate``, publish telemetry at ``--rate`` msg/s each for
``--duration`` s (QoS ``--qos``), ``--subscribers`` devices subscribe to ``relay/#``. Each generator is one
process (the engine: ``python -m harness.fleet.worker``; the peer: one local locust process, one paho
client per user with ``use_loop_selectors``); devices connect straight to the broker (no discovery) so the
MQTT engines are what is compared. Counts come from the same ledger over each run's records. The SDK peer is
the same worker process with every device on ``harness.fleet.sdk_client`` (awscrt's shared event loop), so
the device behaviour is identical and only the MQTT client differs.

    python bench/bench_fleet.py                        # 2000 devices, 5 msg/s each, 10 s
    python bench/bench_fleet.py --devices 500 --rate 2 --duration 5
    python bench/bench_fleet.py --devices 1000 --qos 1 --peers locust,sdk
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.fleet.ledger import Ledger
from harness.fleet.locust_run import run_locust
from harness.fleet.plan import FleetConfig, FleetPlan, make_plan
from harness.fleet.sinks import read_jsonl
from harness.fleet.stand import LoadStand
from harness.profiles import find_profile


def engine_run(plan: FleetPlan, out: Path) -> tuple[list[Path], float, float, float]:
    """The asyncio engine in a worker process; returns record files, CPU s, RSS MB, wall s."""
    out.mkdir(parents=True, exist_ok=True)
    plan_path = plan.write(out / "plan.json")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.fleet.worker", str(plan_path), str(out)],
        capture_output=True,
        text=True,
        timeout=plan.config.time_bound_s() + 60,
        check=False,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(
            f"engine worker failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    files = sorted(out.glob("*.jsonl"))
    cpu = rss = 0.0
    for path in files:
        for m in read_jsonl(path):
            if m.name == "generator":
                cpu, rss = float(m.context["cpu_s"]), float(m.context["rss_mb"])
    return files, cpu, rss, wall


def figures(files: list[Path], plan: FleetPlan, cpu: float, rss: float, wall: float) -> dict[str, Any]:
    ledger = Ledger(d.thing for d in plan.devices)
    for path in files:
        for m in read_jsonl(path):
            if m.request_type != "FLEET":
                ledger.add(m)
    s = ledger.summary()
    return {
        "connected": s.connected,
        "published": s.published,
        "received": s.received,
        "lost": s.lost,
        "pub_failed": s.publish_failed,
        "ack_p50": s.publish_ack_ms["p50"],
        "pub_msg_s": s.published_msg_s,
        "rx_msg_s": s.throughput_msg_s,
        "lat_p50": s.latency_ms["p50"],
        "lat_p99": s.latency_ms["p99"],
        "conn_p50": s.connect_ms["p50"],
        "conn_p99": s.connect_ms["p99"],
        "cpu_s": cpu,
        "rss_mb": rss,
        "wall_s": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=5.0, help="messages per second per device")
    ap.add_argument("--qos", type=int, default=0, choices=(0, 1))
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connect-rate", type=float, default=200.0)
    ap.add_argument("--subscribers", type=int, default=1)
    ap.add_argument("--profile", default="native-x86_64")
    ap.add_argument("--peers", default="locust,sdk", help="comma-separated: locust, sdk")
    args = ap.parse_args()
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if unknown := set(peers) - {"locust", "sdk"}:
        raise SystemExit(f"--peers: unknown {', '.join(sorted(unknown))}; allowed: locust, sdk")
    cfg = FleetConfig(
        devices=args.devices,
        connect_rate=args.connect_rate,
        rate=args.rate,
        qos=args.qos,
        duration_s=args.duration,
        subscribers=args.subscribers,
        discover=False,
        drain_s=5.0,
        connect_timeout_s=60.0,
    )
    rows: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(dir="/var/tmp", prefix="bench-fleet-") as tmp,
        LoadStand(find_profile(args.profile), args.devices, progress=print) as stand,
    ):
        plan = make_plan(cfg, stand.identities, broker=stand.broker)
        print(
            f"bench: engine (asyncio, 1 process): {args.devices} devices, {args.rate:g} msg/s each, "
            f"QoS {args.qos}, {args.duration:g} s",
            flush=True,
        )
        files, cpu, rss, wall = engine_run(plan, Path(tmp) / "engine")
        rows["asyncio engine"] = figures(files, plan, cpu, rss, wall)
        if "locust" in peers:
            print("bench: peer (locust + paho, 1 process), same plan", flush=True)
            out = run_locust(plan, Path(tmp) / "peer", workers=0, user_class="PahoPeerUser", progress=print)
            rows["locust+paho"] = figures(
                out.records, plan, out.generator_cpu_s, out.generator_rss_mb, out.wall_s
            )
        if "sdk" in peers:
            print("bench: peer (AWS IoT Device SDK / awscrt, 1 process), same plan", flush=True)
            sdk_plan = dataclasses.replace(
                plan, devices=[dataclasses.replace(d, engine="sdk") for d in plan.devices]
            )
            files, cpu, rss, wall = engine_run(sdk_plan, Path(tmp) / "sdk")
            rows["aws sdk"] = figures(files, sdk_plan, cpu, rss, wall)
    cols = [
        "connected",
        "pub_msg_s",
        "rx_msg_s",
        "lost",
        "pub_failed",
        "lat_p50",
        "lat_p99",
        "ack_p50",
        "conn_p50",
        "conn_p99",
        "cpu_s",
        "rss_mb",
    ]
    print()
    print(f"{'generator':15}" + "".join(f"{c:>11}" for c in cols))
    for name, r in rows.items():
        print(f"{name:15}" + "".join(f"{_fmt(r[c]):>11}" for c in cols))
    eng = rows["asyncio engine"]
    for name, peer in rows.items():
        if name == "asyncio engine":
            continue
        print(f"\nvs {name}:")
        for key, label in (
            ("connected", "devices connected"),
            ("pub_msg_s", "published msg/s"),
            ("rx_msg_s", "delivered msg/s"),
        ):
            ratio = eng[key] / peer[key] if peer[key] else float("inf")
            print(f"  {label}: engine {_fmt(eng[key])} vs {_fmt(peer[key])} = x{ratio:.1f}")
        cpu_per_msg = [r["cpu_s"] * 1e6 / max(1, r["published"] + r["received"]) for r in (eng, peer)]
        print(
            f"  generator CPU per message (published + received): engine {cpu_per_msg[0]:.0f} us, "
            f"{name} {cpu_per_msg[1]:.0f} us = x{cpu_per_msg[1] / max(cpu_per_msg[0], 1e-9):.1f}"
        )
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) < 1e5 else f"{v:.0f}"
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
