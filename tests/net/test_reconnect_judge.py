"""The N1 judgement on synthetic attempt logs: jitter, policy floors, tight loops, devices not back."""

from __future__ import annotations

import random

from harness.fleet.backoff import BackoffPolicy
from harness.net.reconnect import Attempt, judge, policy_floor

CUT, HEAL = 100.0, 105.0


def fleet(policy: BackoffPolicy, devices: int = 8) -> dict[str, list[Attempt]]:
    """Devices cut at CUT that retry by ``policy`` until HEAL, then connect."""
    out = {}
    for i in range(devices):
        b = policy.start(i)
        t = CUT + 0.01
        log = [Attempt(CUT - 10, True), Attempt(t, False, "disconnect")]
        step = 0
        while True:
            t += b.next_delay()
            ok = t >= HEAL
            log.append(Attempt(t, ok, "connect", step))
            if ok:
                break
            step += 1
        out[f"dev-{i}"] = log
    return out


def test_jittered_policies_pass() -> None:
    for name in ("equal-jitter", "decorrelated-jitter"):
        policy = BackoffPolicy(name, 0.25, 2)  # type: ignore[arg-type]
        j = judge(fleet(policy), policy, CUT, HEAL)
        assert j.ok, j.problems
        assert any("connect-rate profile" in e for e in j.evidence)


def test_policy_without_jitter_fails_with_lockstep_message() -> None:
    policy = BackoffPolicy("exponential", 0.25, 2)
    j = judge(fleet(policy), policy, CUT, HEAL)
    assert not j.ok
    assert "no jitter: at retry step 0 all 8 devices waited 0.250 s" in j.problems[0]


def test_tight_loop_fails() -> None:
    policy = BackoffPolicy("none", 0.25, 2)
    log = {
        "dev-0": [Attempt(CUT, False, "disconnect")]
        + [Attempt(CUT + 0.001 * k, False, "connect", k) for k in range(1, 50)]
    }
    j = judge(log, policy, CUT, HEAL)
    assert any("unbounded retry loop" in p for p in j.problems)
    assert any("did not reconnect" in p for p in j.problems)


def test_retry_below_policy_floor_fails() -> None:
    policy = BackoffPolicy("equal-jitter", 1.0, 8)
    log = {
        "dev-0": [
            Attempt(CUT, False, "disconnect"),
            Attempt(CUT + 0.2, False, "connect", 0),
            Attempt(HEAL + 1, True, "connect", 1),
        ]
    }
    j = judge(log, policy, CUT, HEAL)
    assert "allows no less than 0.500 s" in j.problems[0]


def test_partition_that_did_not_bite_is_reported() -> None:
    policy = BackoffPolicy("equal-jitter", 0.25, 2)
    j = judge({"dev-0": [Attempt(CUT - 5, True)]}, policy, CUT, HEAL)
    assert "never lost its connection" in j.problems[0]


def test_floors() -> None:
    assert policy_floor(BackoffPolicy("equal-jitter", 0.5, 4), 3) == 2.0
    assert policy_floor(BackoffPolicy("exponential", 0.5, 4), 5) == 4.0
    assert policy_floor(BackoffPolicy("full-jitter", 0.5, 4), 2) == 0.0
    assert policy_floor(BackoffPolicy("decorrelated-jitter", 0.5, 4), 9) == 0.5
    random.seed(0)
