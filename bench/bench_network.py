"""Benchmark: the same fleet load through the harness's link, unimpaired, impaired, and cleared again.

One cloud, one networked reference core (``harness.net.stand``: the core's target in a namespace, the fleet
on the other end of a veth), and three runs of the same fleet plan back to back:

  baseline   the link unimpaired (a bare veth)
  impaired   ``--impair`` on the fleet link (default delay=100ms,loss=2%, each direction)
  cleared    the impairment removed again

Prints delivery latency and publish-acknowledgement percentiles, loss and duplicates from the fleet's ledger,
and the TCP retransmissions counted in the core's namespace, each as a ratio to the baseline measured in the
same run. ``cleared`` / ``baseline`` near 1 shows the harness adds no noise of its own once an impairment
is cleared; ``--loopback-peer`` also runs the plan against the ordinary load stand (core on 127.0.0.1, no
namespace) for the veth-versus-loopback comparison. Every run is bounded (devices, duration).

    python bench/bench_network.py --profile native-x86_64 --devices 100 --rate 2 --duration 15 \\
        --impair delay=100ms,loss=2% [--loopback-peer] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.cloud.api import Cloud
from harness.errors import HarnessError
from harness.fleet import BrokerEndpoint, FleetConfig, FleetEngine, Ledger, make_plan
from harness.fleet.backoff import BackoffPolicy
from harness.fleet.stand import POLICY, LoadStand, client_policy, provision_load_devices, raise_fd_limit
from harness.net.control import NetControl
from harness.net.impair import Impairment
from harness.net.stand import NetworkStand
from harness.profiles import find_profile

CORE = "bench-net-core"
COUNTERS = ("RetransSegs", "TCPTimeouts", "TCPFastRetrans", "TCPLostRetransmit", "OutSegs", "InSegs")


def run_phase(
    name: str, cfg: FleetConfig, identities: list[Any], broker: BrokerEndpoint, control: NetControl | None
) -> dict[str, Any]:
    plan = make_plan(cfg, identities, broker=broker)
    ledger = Ledger(d.thing for d in plan.devices)
    before = control.tcp_counters() if control else {}
    t0 = time.time()
    report = FleetEngine(
        plan, [ledger], progress=lambda m: print(f"  [{name}] {m}", file=sys.stderr)
    ).run_sync()
    after = control.tcp_counters() if control else {}
    s = ledger.summary()
    tcp = {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS} if control else {}
    return {
        "phase": name,
        "started_unix": round(t0, 3),
        "wall_s": round(report.ended_unix - report.started_unix, 2),
        "connected": s.connected,
        "devices": s.devices,
        "published": s.published,
        "received": s.received,
        "lost": s.lost,
        "duplicates": s.duplicates,
        "latency_ms": s.latency_ms,
        "publish_ack_ms": s.publish_ack_ms,
        "connect_ms": s.connect_ms,
        "tcp_core_ns": tcp,
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _ratio(v: float | None, base: float | None) -> str:
    return "-" if v is None or not base else f"{v / base:.2f}x"


def print_table(phases: list[dict[str, Any]]) -> None:
    base = phases[0]
    print(
        f"{'phase':<10} {'lat p50':>8} {'p95':>8} {'p99':>8} {'ack p50':>8} {'ack p99':>8} "
        f"{'lost':>5} {'dups':>5} {'retrans':>8} {'segs out':>9}  p50 x base  p99 x base  retrans/seg"
    )
    for p in phases:
        lat, ack, tcp = p["latency_ms"], p["publish_ack_ms"], p["tcp_core_ns"]
        rps = (tcp.get("RetransSegs", 0) / tcp["OutSegs"]) if tcp.get("OutSegs") else None
        print(
            f"{p['phase']:<10} {_fmt(lat.get('p50')):>8} {_fmt(lat.get('p95')):>8} {_fmt(lat.get('p99')):>8} "
            f"{_fmt(ack.get('p50')):>8} {_fmt(ack.get('p99')):>8} {p['lost']:>5} {p['duplicates']:>5} "
            f"{tcp.get('RetransSegs', '-'):>8} {tcp.get('OutSegs', '-'):>9}  "
            f"{_ratio(lat.get('p50'), base['latency_ms'].get('p50')):>10}  "
            f"{_ratio(lat.get('p99'), base['latency_ms'].get('p99')):>10}  "
            f"{'-' if rps is None else f'{rps:.2%}':>11}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="native-x86_64")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--rate", type=float, default=2.0, help="messages/s per device")
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1))
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of telemetry per phase")
    ap.add_argument("--subscribers", type=int, default=2)
    ap.add_argument("--impair", default="delay=100ms,loss=2%")
    ap.add_argument("--repeat", type=int, default=1, help="repeat the baseline/impaired/cleared triple")
    ap.add_argument("--loopback-peer", action="store_true", help="also run against the core on 127.0.0.1")
    ap.add_argument("--out", type=Path, default=None, help="write bench-network.json here")
    args = ap.parse_args(argv)
    try:
        spec = Impairment.parse(args.impair)
        profile = find_profile(args.profile)
        cfg = FleetConfig(
            devices=args.devices,
            connect_rate=50,
            rate=args.rate,
            qos=args.qos,
            duration_s=args.duration,
            subscribers=args.subscribers,
            discover=False,
            backoff=BackoffPolicy("full-jitter", 0.5, 5),
        ).validate()
    except HarnessError as exc:
        print(f"bench_network: {exc}", file=sys.stderr)
        return 2
    raise_fd_limit(4 * args.devices + 512)
    state = Path(tempfile.mkdtemp(prefix="bench-net-", dir="/var/tmp"))
    phases: list[dict[str, Any]] = []
    net_report: dict[str, Any] = {}
    try:
        run_all(args, cfg, spec, profile, state, phases, net_report)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(
        f"\nprofile {profile.name}, {args.devices} devices x {args.rate:g} msg/s, QoS {args.qos}, "
        f"{args.duration:g} s per phase, impairment on the fleet link: {spec} (each direction), "
        f"backend {net_report.get('backend')}"
    )
    print_table(phases)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench-network.json").write_text(
            json.dumps({"impair": str(spec), "phases": phases, "network": net_report}, indent=1)
        )
    return 0


def run_all(
    args: argparse.Namespace,
    cfg: FleetConfig,
    spec: Impairment,
    profile: Any,
    state: Path,
    phases: list[dict[str, Any]],
    net_report: dict[str, Any],
) -> None:
    """The phases, in one cloud; fills ``phases`` and ``net_report``."""
    with Cloud(state) as cloud:
        cloud.provision_core(CORE)
        identities = provision_load_devices(cloud, CORE, args.devices)
        cloud.set_client_policy(CORE, client_policy(CORE), source=str(POLICY))
        with NetworkStand(profile, cloud, CORE, progress=lambda m: print(m, file=sys.stderr)) as stand:
            assert stand.control is not None and stand.topology is not None and stand.core is not None
            ctl = stand.control
            broker = BrokerEndpoint(
                stand.topology.link("fleet").core_addr, stand.core.port, cloud.core_ca(CORE).pem
            )
            for _ in range(max(1, args.repeat)):
                phases.append(run_phase("baseline", cfg, identities, broker, ctl))
                ctl.impair("fleet", spec)
                phases.append(run_phase("impaired", cfg, identities, broker, ctl))
                ctl.clear("fleet")
                phases.append(run_phase("cleared", cfg, identities, broker, ctl))
            ctl.close()
            net_report.update(ctl.report())
    if args.loopback_peer:
        with LoadStand(profile, args.devices) as ls:
            phases.append(run_phase("loopback", cfg, ls.identities, ls.broker, None))


if __name__ == "__main__":
    from harness.errors import interrupt_on_sigterm

    interrupt_on_sigterm()
    sys.exit(main())
