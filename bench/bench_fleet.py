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
import os
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


def engine_run(
    plan: FleetPlan, out: Path, spy: Path | None = None, tree: Path | None = None
) -> tuple[list[Path], float, float, float]:
    """The asyncio engine in a worker process; returns record files, CPU s, RSS MB, wall s.

    ``spy``: record the worker under py-spy (collapsed stacks written there) to see where its CPU goes.
    ``tree``: run the ``harness`` package found there instead (an older engine, for before/after)."""
    out.mkdir(parents=True, exist_ok=True)
    plan_path = plan.write(out / "plan.json")
    started = time.monotonic()
    argv = [sys.executable, "-m", "harness.fleet.worker", str(plan_path), str(out)]
    if spy is not None:
        argv = ["py-spy", "record", "--nonblocking", "--format", "raw", "--output", str(spy), "--", *argv]
    env = dict(os.environ, PYTHONPATH=str(tree)) if tree is not None else None
    log = out / "worker.log"
    samples: list[tuple[float, float]] = []  # (Unix time, process CPU s): the telemetry phase's share
    with log.open("w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + plan.config.time_bound_s() + 60
        tick = os.sysconf("SC_CLK_TCK")
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"engine worker overran its bound; log: {log.read_text()[-2000:]}")
                try:
                    fields = Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()
                    samples.append((time.time(), (int(fields[11]) + int(fields[12])) / tick))
                except (OSError, IndexError, ValueError):
                    pass
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"engine worker failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    files = sorted(out.glob("*.jsonl"))
    cpu = rss = 0.0
    first = last = 0
    for path in files:
        for m in read_jsonl(path):
            if m.name == "generator":
                cpu, rss = float(m.context["cpu_s"]), float(m.context["rss_mb"])
                LOOPS[out.name] = str(m.context.get("loop") or "asyncio")
            elif m.name == "publish" and "sent_ns" in m.context:
                t = int(m.context["sent_ns"])
                first, last = min(first or t, t), max(last, t)
    if first and spy is None:
        PHASE_CPU[out.name] = _cpu_at(samples, last / 1e9) - _cpu_at(samples, first / 1e9)
    return files, cpu, rss, wall


def _cpu_at(samples: list[tuple[float, float]], t: float) -> float:
    """The worker's CPU seconds at Unix time ``t``, interpolated between the 0.1 s samples."""
    before = [s for s in samples if s[0] <= t] or samples[:1]
    after = [s for s in samples if s[0] >= t] or samples[-1:]
    (t0, c0), (t1, c1) = before[-1], after[0]
    return c0 if t1 <= t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)


#: Per run (its output folder's name): the worker's CPU seconds from its first to its last publish (sampled
#: from /proc, so an older engine is measured the same way) and its event loop.
PHASE_CPU: dict[str, float | None] = {}
LOOPS: dict[str, str] = {}


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
    ap.add_argument("--peers", default="locust,sdk", help="comma-separated: locust, sdk (empty: engine only)")
    ap.add_argument(
        "--baseline-tree",
        type=Path,
        help="also run the engine from this copy of the repository (e.g. `git archive HEAD~3 harness`), "
        "same plan, same broker: before/after in one run",
    )
    ap.add_argument(
        "--spy", type=Path, help="run the engine worker under py-spy; collapsed stacks to this file"
    )
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
        files, cpu, rss, wall = engine_run(plan, Path(tmp) / "engine", args.spy)
        rows["asyncio engine"] = figures(files, plan, cpu, rss, wall)
        if args.baseline_tree is not None:
            print(f"bench: baseline engine from {args.baseline_tree}, same plan", flush=True)
            files, cpu, rss, wall = engine_run(plan, Path(tmp) / "baseline", tree=args.baseline_tree)
            rows["baseline engine"] = figures(files, plan, cpu, rss, wall)
            rows["baseline engine"]["phase_cpu_s"] = PHASE_CPU.get("baseline")
        rows["asyncio engine"]["phase_cpu_s"] = PHASE_CPU.get("engine")
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
    load1, load5, _ = os.getloadavg()
    print(
        f"\nload average at the end: {load1:.2f} (1 min), {load5:.2f} (5 min); "
        f"engine loop: {LOOPS.get('engine')}"
    )
    for name, r in rows.items():
        acked = r["published"] - r["pub_failed"]
        if r.get("phase_cpu_s") and acked + r["received"]:
            per = r["phase_cpu_s"] * 1e6 / (acked + r["received"])
            r["phase_us_msg"] = per
            span = r["published"] / r["pub_msg_s"] if r["pub_msg_s"] else 0.0
            core = f"{r['phase_cpu_s'] * 100 / span:.0f} % of a core" if span else "-"
            print(
                f"{name}: CPU first to last publish {r['phase_cpu_s']:.2f} s for {acked} sent/acked + "
                f"{r['received']} received = {per:.1f} us per message; {r['pub_msg_s']:.0f} msg/s at {core}"
            )
    for name, peer in rows.items():
        if name == "asyncio engine":
            continue
        if eng.get("phase_us_msg") and peer.get("phase_us_msg"):
            print(
                f"\nvs {name}: telemetry-phase CPU per message {eng['phase_us_msg']:.1f} us vs "
                f"{peer['phase_us_msg']:.1f} us = x{peer['phase_us_msg'] / eng['phase_us_msg']:.2f} less"
            )
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
    from harness.errors import interrupt_on_sigterm

    interrupt_on_sigterm()
    sys.exit(main())
