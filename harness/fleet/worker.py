"""Run a fleet plan (or one shard of it) in a process of its own: ``python -m harness.fleet.worker PLAN OUT``.

For scale-out without locust and for measuring the engine the way the locust peer is measured (a whole
process: CPU, RSS). Writes ``OUT/shard-<i>.jsonl`` with every record, then one ``FLEET generator`` record
with the process's CPU seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.fleet.engine import FleetEngine
from harness.fleet.plan import FleetPlan
from harness.fleet.sinks import JsonlSink
from harness.records import Measurement


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.fleet.worker", description=__doc__)
    parser.add_argument("plan", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--shard", default="0/1", help="I/N: run devices I, I+N, ... (default 0/1: all)")
    args = parser.parse_args(argv)
    try:
        index, count = (int(x) for x in args.shard.split("/"))
        plan = FleetPlan.read(args.plan).shard(index, count)
        sink = JsonlSink(args.out / f"shard-{index:03d}.jsonl")
        try:
            report = FleetEngine(plan, [sink], progress=lambda m: print(m, flush=True)).run_sync()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            sink(
                Measurement(
                    "FLEET",
                    "generator",
                    0.0,
                    0,
                    None,
                    {
                        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                        "rss_mb": round(usage.ru_maxrss / 1024.0, 1),
                        "engine_cpu_s": report.cpu_s,
                        "publish_cpu_s": report.publish_cpu_s,
                        "loop": report.loop,
                    },
                )
            )
        finally:
            sink.close()
    except (HarnessError, ValueError) as exc:
        print(f"fleet worker: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_status", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
