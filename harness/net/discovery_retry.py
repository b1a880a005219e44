"""Client devices that discover their core and fall back through its connectivity list, re-discovering by a
backoff policy when no entry answers; and the judgement of how they did it (scenario N4).

What a Greengrass client device does (the SDK's discovery samples): discover, try every connectivity entry
of the core with the CA discovery returned, and only when all fail, wait and discover again. A device that
re-discovers at once hammers the cloud's discovery endpoint while its core is unreachable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from harness.clients.discovery_http import discover_raw
from harness.clients.mqtt import Credentials, MqttDevice
from harness.fleet.backoff import BackoffPolicy
from harness.net.reconnect import MIN_RETRY_GAP_S, SLACK_S, Attempt, Judgement, policy_floor, spread_problems

#: Seeded defect of the scenario's client devices.
CLIENT_FAULTS = {"discovery_without_backoff": "devices re-discover at once after every entry failed (N4)"}
MAX_ROUNDS = 200
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DiscoveryTarget:
    """Where the discovery endpoint is and what the device presents to it."""

    host: str
    port: int
    root_ca: Path


def entries_of(body: Any) -> tuple[list[tuple[str, int]], str]:
    """The connectivity entries (in order) and the group CA of a discovery answer."""
    out: list[tuple[str, int]] = []
    ca = ""
    for group in body.get("GGGroups", []):
        ca = ca or (group.get("CAs") or [""])[0]
        for core in group.get("Cores", []):
            for c in core.get("Connectivity", []):
                out.append((str(c["HostAddress"]), int(c["PortNumber"])))
    return out, ca


class DiscoveringDevice(threading.Thread):
    """discover -> every entry -> (all failed) backoff -> discover again, until connected or stopped."""

    def __init__(
        self,
        thing: str,
        cert: Path,
        key: Path,
        target: DiscoveryTarget,
        policy: BackoffPolicy,
        seed: int,
        *,
        fault: str | None = None,
    ) -> None:
        super().__init__(name=f"discover-{thing}", daemon=True)
        self.thing, self.cert, self.key, self.target = thing, cert, key, target
        self.policy = policy
        self.backoff = policy.start(seed)
        self.fault = fault
        self.attempts: list[Attempt] = []
        self.entries: list[tuple[str, int]] = []
        self.connected = threading.Event()
        self.stop_event = threading.Event()
        self.client: MqttDevice | None = None

    def run(self) -> None:
        step, waited = -1, 0.0
        while not self.stop_event.is_set() and len(self.attempts) < MAX_ROUNDS * 4:
            t = self.target
            ans = discover_raw(t.port, t.root_ca, self.cert, self.key, self.thing, host=t.host, timeout=5)
            self.attempts.append(Attempt(time.time(), ans.status == 200, "discover", step, waited, ans.error))
            if ans.status == 200:
                self.entries, ca = entries_of(ans.body)
                for host, port in self.entries:
                    dev = MqttDevice(self.thing, Credentials(ca, self.cert, self.key), keepalive=5)
                    res = dev.connect(host, port, timeout=CONNECT_TIMEOUT_S)
                    self.attempts.append(Attempt(time.time(), res.connected, f"connect {host}", step))
                    if res.connected:
                        self.client = dev
                        self.connected.set()
                        return
                    dev.close()
            step += 1
            waited = 0.0 if self.fault == "discovery_without_backoff" else self.backoff.next_delay()
            self.stop_event.wait(waited)

    def close(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        self.join(timeout)
        if self.client is not None:
            self.client.close()


def judge_discovery(
    devices: dict[str, list[Attempt]], entries: int, policy: BackoffPolicy, healed_at: float
) -> Judgement:
    """Every device tried all ``entries`` before each re-discovery, re-discovered no faster than its
    policy allows (nor in a tight loop), with jitter across devices, and connected once the core was back."""
    j = Judgement()
    steps: dict[int, list[float]] = {}
    for thing, attempts in devices.items():
        discovers = [a for a in attempts if a.kind == "discover"]
        if not any(a.ok and a.kind.startswith("connect") and a.at >= healed_at for a in attempts):
            j.problems.append(f"{thing} did not connect to its core after it was reachable again")
        for prev, cur in pairwise(discovers):
            tried = [a for a in attempts if a.kind.startswith("connect") and prev.at <= a.at <= cur.at]
            if prev.ok and len(tried) < entries:
                j.problems.append(
                    f"{thing} re-discovered after trying {len(tried)} of the core's {entries} "
                    "connectivity entries"
                )
                break
            gap = cur.at - (tried[-1].at if tried else prev.at)
            floor = max(policy_floor(policy, cur.step), MIN_RETRY_GAP_S)
            if gap + SLACK_S < floor:
                j.problems.append(
                    f"{thing} re-discovered {gap:.3f} s after its last failed attempt (step {cur.step}): "
                    f"a tight loop against the discovery endpoint ({len(discovers)} discoveries; "
                    f"policy {policy} allows no less than {floor:.3f} s)"
                )
                break
            steps.setdefault(cur.step, []).append(gap)
    j.problems += spread_problems(steps, policy, what="re-discovery", evidence=j.evidence)
    counts = [sum(1 for a in v if a.kind == "discover") for v in devices.values()]
    j.evidence.append(f"discoveries per device: {counts}; connectivity entries: {entries}")
    return j
