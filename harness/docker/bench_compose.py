"""Measure the two compose tools against the same private engine, in the same run: ``python -m
harness.docker.bench_compose [--profile NAME] [--rounds N]``.

Prints per-verb medians (up, ps, down) of ``docker-compose`` (Debian 1.29.2, through podman's Docker API)
and ``podman-compose`` (Debian 1.0.3, podman CLI), alternating the tools each round so machine load hits
both alike, and the ratio docker-compose / podman-compose. Which one the connector uses is decided in the
README (Docker) from these figures and from fidelity to seed 003.
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness.docker.engine import COMPOSE_TOOLS, PodmanEngine
from harness.docker.images import import_app_image
from harness.docker.status import PROJECT_PREFIX
from harness.paths import FIXTURES_DIR
from harness.profiles import find_profile

VERBS = (("up", "-d"), ("ps",), ("down",))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.docker.bench_compose")
    ap.add_argument("--profile", default="native-x86_64")
    ap.add_argument("--rounds", type=int, default=3, choices=range(1, 21), metavar="1-20")
    args = ap.parse_args(argv)
    engine = PodmanEngine()
    times: dict[tuple[str, str], list[float]] = {}
    try:
        import_app_image(engine, find_profile(args.profile))
        compose = engine.work / "docker-compose.yml"
        compose.write_bytes((FIXTURES_DIR / "docker" / "compose" / "app-v1.yml").read_bytes())
        engine.start_api()
        for r in range(args.rounds):
            tools = COMPOSE_TOOLS if r % 2 == 0 else tuple(reversed(COMPOSE_TOOLS))
            for tool in tools:
                for verb in VERBS:
                    t = time.monotonic()
                    res = engine.compose(tool, PROJECT_PREFIX, compose, *verb, timeout=600)
                    times.setdefault((tool, verb[0]), []).append(time.monotonic() - t)
                    if not res.ok:
                        print(res.evidence())
                        return 1
                left = engine.containers(PROJECT_PREFIX)
                if left:
                    print(f"{tool} down left containers: {left}")
                    return 1
    finally:
        engine.close()
    print(f"profile {args.profile}, {args.rounds} rounds, 2 services, median seconds")
    print(f"{'verb':6} {'docker-compose':>15} {'podman-compose':>15} {'ratio':>7}")
    for name in (v[0] for v in VERBS):
        d = statistics.median(times[("docker-compose", name)])
        p = statistics.median(times[("podman-compose", name)])
        print(f"{name:6} {d:15.2f} {p:15.2f} {d / p:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
