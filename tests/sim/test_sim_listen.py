"""The listen backlog and the clients' SYN retransmissions in both engines, and reading them off the machine.

A SYN that finds the kernel's accept queue full is dropped; Linux clients resend it 1 s, 3 s, 7 s, ... after
the first (initial RTO 1 s, doubling, ``tcp_syn_retries`` times). Both engines must agree on that exactly on
a deterministic case and statistically on a random one, for a core that accepts only when it can start a
handshake (the queue is the handshake queue) and for an eager one (``accept_interval_s``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import InputError
from harness.sim import ServiceTime, SimConfig, simulate
from harness.sim.cohort import cohort_width_s
from harness.sim.listen import parse_listen_counters, parse_ss_backlog, somaxconn, syn_retries

DETERMINISTIC: dict[str, Any] = dict(
    devices=40, policy="fixed", base_s=0.37, cap_s=10, event="rotation", outage_s=0.0, concurrency=1,
    handshake=ServiceTime(0.05, 0.05), backlog=5, connect_timeout_s=10.0, network_delay_s=0.0011,
)  # fmt: skip


@pytest.mark.parametrize("eager", [None, 0.12], ids=["lazy-core", "eager-core"])
def test_engines_agree_exactly_on_a_deterministic_syn_storm(eager: float | None) -> None:
    cfg = SimConfig(**DETERMINISTIC, accept_interval_s=eager)
    fast, ref = simulate(cfg, "cohort"), simulate(cfg, "naive")
    assert fast.reconnected == ref.reconnected == cfg.devices
    assert fast.syn_retransmits == ref.syn_retransmits > 0
    assert fast.rejected == ref.rejected
    assert fast.t100_s == pytest.approx(ref.t100_s, abs=0.01)
    if eager is None:
        # Six per wave (one in service, five queued); the rest resend 1, 3, 7 s after their first SYN.
        assert fast.t50_s == pytest.approx(7.101, abs=0.01)


STATISTICAL: dict[str, Any] = dict(
    devices=3000, policy="full", base_s=0.25, cap_s=10, event="rotation", outage_s=0.0, concurrency=4,
    handshake=ServiceTime(0.008, 0.015), backlog=50, connect_timeout_s=10.0,
)  # fmt: skip


@pytest.mark.parametrize("eager", [None, 0.05], ids=["lazy-core", "eager-core"])
def test_engines_agree_on_a_random_syn_storm(eager: float | None) -> None:
    runs = {
        e: [simulate(SimConfig(**STATISTICAL, accept_interval_s=eager, seed=s), e) for s in (1, 2)]
        for e in ("cohort", "naive")
    }

    def mean(engine: str, field: str) -> float:
        return float(np.mean([getattr(m, field) for m in runs[engine]]))

    for field in ("t50_s", "t95_s", "attempts_mean", "syn_retransmits"):
        assert mean("cohort", field) == pytest.approx(mean("naive", field), rel=0.06), field
    assert mean("cohort", "syn_retransmits") > 1000


def test_a_dropped_syn_is_resent_after_1_3_7_s_and_given_up_at_the_deadline() -> None:
    # Nothing ever gets in (backlog 0): each attempt sends 4 SYNs (0, 1, 3, 7 s) and fails at its 10 s
    # deadline, before the 15 s resend; the fixed 1000 s backoff puts the next attempt past the horizon.
    cfg = SimConfig(
        devices=1, policy="fixed", base_s=1000, cap_s=1000, event="rotation", outage_s=0, backlog=0,
        connect_timeout_s=10.0, horizon_s=500.0,
    )  # fmt: skip
    for engine in ("cohort", "naive"):
        m = simulate(cfg, engine)
        assert (m.attempts_total, m.syn_retransmits, m.rejected, m.reconnected) == (1, 3, 1, 0), engine


@pytest.mark.parametrize(("horizon", "attempts"), [(126.5, 1), (128.5, 2)])
def test_the_client_gives_up_after_its_last_syn_retry(horizon: float, attempts: int) -> None:
    # tcp_syn_retries 6: SYNs at 0, 1, 3, 7, 15, 31, 63 s, given up at 127 s (before a 300 s timeout);
    # the retry 1 s later is the second attempt.
    cfg = SimConfig(
        devices=1, policy="fixed", base_s=1.0, cap_s=1.0, event="rotation", outage_s=0, backlog=0,
        connect_timeout_s=300.0, horizon_s=horizon,
    )  # fmt: skip
    for engine in ("cohort", "naive"):
        assert simulate(cfg, engine).attempts_total == attempts, engine


def test_cohorts_are_as_wide_as_the_shortest_resend_to_failure() -> None:
    assert cohort_width_s(SimConfig(devices=1, connect_timeout_s=5.0)) == 5.0
    assert cohort_width_s(SimConfig(devices=1, connect_timeout_s=5.0, backlog=10)) == 2.0  # 3 s resend
    assert cohort_width_s(SimConfig(devices=1, connect_timeout_s=1.0, backlog=10)) == 1.0
    assert cohort_width_s(SimConfig(devices=1, connect_timeout_s=300.0, backlog=10)) == 127.0 - 63.0


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"syn_retries": -1}, "syn_retries"),
        ({"syn_rto_s": 0}, "syn_rto_s"),
        ({"accept_interval_s": 0.1}, "backlog"),
    ],
)
def test_bad_syn_settings_name_the_field(fields: dict[str, Any], name: str) -> None:
    with pytest.raises(InputError, match=name):
        SimConfig(devices=10, **fields)


def test_ss_send_q_is_the_listeners_backlog() -> None:
    text = (
        "LISTEN 0      4096   127.0.0.1:39423 0.0.0.0:*\n"
        "LISTEN 3      100    127.0.0.1:8883 0.0.0.0:*\n"
        "LISTEN 0      511    [::]:80 [::]:*\n"
    )
    assert parse_ss_backlog(text, 8883) == 100
    assert parse_ss_backlog(text, 80) == 511
    assert parse_ss_backlog(text, 1883) is None


def test_listen_overflows_come_from_the_tcpext_lines() -> None:
    text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 19\nIpExt: A\nIpExt: 1\n"
    assert parse_listen_counters(text) == {"ListenOverflows": 17, "ListenDrops": 19}
    assert parse_listen_counters("") == {"ListenOverflows": 0, "ListenDrops": 0}


def test_sysctls_are_read_from_proc_sys(tmp_path: Path) -> None:
    (tmp_path / "net/core").mkdir(parents=True)
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/core/somaxconn").write_text("4096\n")
    (tmp_path / "net/ipv4/tcp_syn_retries").write_text("6\n")
    assert somaxconn(tmp_path) == 4096 and syn_retries(tmp_path) == 6
    assert somaxconn(tmp_path / "missing") is None


def test_the_cohort_width_does_not_change_a_syn_storm(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any width up to cohort_width_s is exact, so 3 s cohorts (resends mostly inside them) and 0.2 s ones
    # (every resend carried to a later cohort) must agree; a resend filed against the wrong device made the
    # wide ones 1.5 % early.
    cfg: dict[str, Any] = dict(
        devices=5000, policy="full", event="rotation", outage_s=0.5, concurrency=4, base_s=0.25, cap_s=10,
        backlog=50, handshake=ServiceTime(0.008, 0.015), connect_timeout_s=10.0,
    )  # fmt: skip
    assert cohort_width_s(SimConfig(**cfg)) == 3.0

    def t50s() -> float:
        return float(np.mean([simulate(SimConfig(**cfg, seed=s)).t50_s or 0.0 for s in range(1, 9)]))

    wide = t50s()
    monkeypatch.setattr("harness.sim.cohort.cohort_width_s", lambda _config: 0.2)
    assert t50s() == pytest.approx(wide, rel=0.007)
