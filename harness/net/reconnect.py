"""Client devices that reconnect by a backoff policy, and the judgement of how they did it.

A :class:`ReconnectingDevice` is a real MQTT client (paho, mutual TLS) whose reconnects are timed by a
``harness.fleet.backoff`` policy instead of paho's own fixed doubling; it records every connection attempt.
:func:`judge` checks the attempts of a fleet against the network scenario's requirements: every device is
back after the partition, no device retries faster than its policy allows (nor ever in a tight loop), and
the retry delays carry jitter, so the connect-rate profile has no synchronized spikes.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from harness.clients.mqtt import Credentials
from harness.fleet.backoff import BackoffPolicy

#: No retry may follow the previous failure sooner than this, whatever the policy says: a tight loop.
MIN_RETRY_GAP_S = 0.1
#: Clock slack for the floor check (thread scheduling, TCP reset round trip).
SLACK_S = 0.03
#: Retry delays at one step must spread over at least this share of their mean (else: no jitter).
MIN_SPREAD = 0.1
MAX_ATTEMPTS = 300
CONNECT_TIMEOUT_S = 5.0
PROFILE_BIN_S = 0.1


@dataclass
class Attempt:
    """One connection attempt: when it started (Unix time), whether it ended in CONNACK, and the step.

    ``step`` counts failures since the last success (0 = the first retry after a disconnect);
    ``waited`` is the delay the device slept before it; ``kind`` is ``connect`` or ``disconnect``."""

    at: float
    ok: bool
    kind: str = "connect"
    step: int = -1
    waited: float = 0.0
    error: str = ""


def policy_floor(policy: BackoffPolicy, step: int) -> float:
    """The shortest delay ``policy`` allows before retry number ``step`` (0-based) after a disconnect."""
    exp = min(policy.cap_s, policy.base_s * 2.0 ** min(step, 62))
    return {
        "none": 0.0,
        "fixed": policy.base_s,
        "exponential": exp,
        "full-jitter": 0.0,
        "equal-jitter": exp / 2,
        "decorrelated-jitter": policy.base_s,
    }[policy.name]


class ReconnectingDevice(threading.Thread):
    """One device: connect, stay connected (keep-alive), and after any loss retry by the policy."""

    def __init__(
        self,
        thing: str,
        creds: Credentials,
        host: str,
        port: int,
        policy: BackoffPolicy,
        seed: int,
        *,
        keepalive: int = 2,
    ) -> None:
        super().__init__(name=f"reconnect-{thing}", daemon=True)
        self.thing = thing
        self.host = host
        self.port = port
        self.policy = policy
        self.backoff = policy.start(seed)
        self.keepalive = keepalive
        self.attempts: list[Attempt] = []
        self.stop_event = threading.Event()
        self.connected = threading.Event()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cadata=creds.ca_pem)
        assert creds.cert_path is not None and creds.key_path is not None
        ctx.load_cert_chain(str(creds.cert_path), str(creds.key_path))
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=thing, protocol=paho.MQTTv311)
        self.client.tls_set_context(ctx)

    def _try_connect(self) -> str:
        """One attempt; '' on CONNACK success, else why not."""
        try:
            self.client.connect(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ssl.SSLError) as exc:
            return f"{type(exc).__name__}: {exc}"
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
                return "connection lost before CONNACK"
            if self.client.is_connected():
                return ""
        return f"no CONNACK within {CONNECT_TIMEOUT_S:g} s"

    def run(self) -> None:
        waited = 0.0
        step = -1
        while not self.stop_event.is_set() and len(self.attempts) < MAX_ATTEMPTS:
            now = time.time()
            err = self._try_connect()
            self.attempts.append(Attempt(now, not err, "connect", step, waited, err))
            if err:
                step += 1
                waited = self.backoff.next_delay()
                self.stop_event.wait(waited)
                continue
            self.backoff.reset()
            self.connected.set()
            while not self.stop_event.is_set():
                if self.client.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS or not self.client.is_connected():
                    break
            self.connected.clear()
            if self.stop_event.is_set():
                break
            self.attempts.append(Attempt(time.time(), False, "disconnect"))
            step = 0
            waited = self.backoff.next_delay()
            self.stop_event.wait(waited)
        try:
            self.client.disconnect()
        except (OSError, ValueError):
            pass

    def close(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.join(timeout)


@dataclass
class Judgement:
    problems: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _gaps(attempts: list[Attempt]) -> list[tuple[int, float]]:
    """(step, measured delay) of every retry: from the disconnect or failed attempt before it."""
    out = []
    for prev, cur in pairwise(attempts):
        if cur.kind == "connect" and cur.step >= 0 and not prev.ok:
            out.append((cur.step, cur.at - prev.at))
    return out


def connect_profile(devices: dict[str, list[Attempt]], since: float) -> list[tuple[float, int]]:
    """Connection attempts per 100 ms bin after ``since`` (the connect-rate profile), non-empty bins only."""
    bins: Counter[int] = Counter()
    for attempts in devices.values():
        for a in attempts:
            if a.kind == "connect" and a.at >= since:
                bins[int((a.at - since) / PROFILE_BIN_S)] += 1
    return [(round(b * PROFILE_BIN_S, 1), n) for b, n in sorted(bins.items())]


def spread_problems(
    steps: dict[int, list[float]],
    policy: BackoffPolicy,
    *,
    what: str = "retry",
    evidence: list[str] | None = None,
) -> list[str]:
    """A problem for every step at which the devices' measured delays are (almost) equal: no jitter."""
    out = []
    for step, gaps in sorted(steps.items()):
        if len(gaps) < 4:
            continue
        mean = sum(gaps) / len(gaps)
        spread = max(gaps) - min(gaps)
        if evidence is not None:
            evidence.append(
                f"step {step}: {len(gaps)} {what} delays, {min(gaps):.3f}-{max(gaps):.3f} s "
                f"(spread {spread:.3f} s)"
            )
        if mean >= 0.05 and spread < MIN_SPREAD * mean:
            out.append(
                f"no jitter: at {what} step {step} all {len(gaps)} devices waited {mean:.3f} s "
                f"(spread {spread * 1000:.0f} ms < {MIN_SPREAD:.0%} of the delay), so they retry in lockstep "
                f"and the connect-rate profile shows synchronized spikes (policy {policy})"
            )
    return out


def judge(
    devices: dict[str, list[Attempt]], policy: BackoffPolicy, cut_at: float, healed_at: float
) -> Judgement:
    """Check a fleet's reconnects around one partition against the scenario's requirements."""
    j = Judgement()
    steps: dict[int, list[float]] = {}
    for thing, attempts in devices.items():
        after = [a for a in attempts if a.at >= cut_at]
        if not any(a.kind == "disconnect" or not a.ok for a in after):
            j.problems.append(
                f"{thing} never lost its connection during the partition (the partition did not bite)"
            )
            continue
        if not any(a.ok and a.at >= healed_at for a in after):
            j.problems.append(f"{thing} did not reconnect after the partition healed")
        for step, gap in _gaps(after):
            floor = max(policy_floor(policy, step), MIN_RETRY_GAP_S)
            if gap + SLACK_S < floor:
                why = (
                    f"its policy {policy} allows no less than {policy_floor(policy, step):.3f} s"
                    if policy_floor(policy, step) >= MIN_RETRY_GAP_S
                    else f"an unbounded retry loop (policy {policy} has no floor; "
                    f"at least {MIN_RETRY_GAP_S} s needed)"
                )
                j.problems.append(f"{thing} retried {gap:.3f} s after a failure at step {step}: {why}")
                break
            steps.setdefault(step, []).append(gap)
    j.problems += spread_problems(steps, policy, evidence=j.evidence)
    profile = connect_profile(devices, cut_at)
    peak = max((n for _, n in profile), default=0)
    j.evidence.append(
        f"connect-rate profile after the cut (attempts per {PROFILE_BIN_S:g} s bin, peak {peak}): "
        + " ".join(f"{t:g}s:{n}" for t, n in profile[:60])
    )
    return j
