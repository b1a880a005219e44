"""Core-software update scenarios O1-O6 (scenarios.md "ota"): V2 nucleus deployments and V1 OTA jobs.

V2 updates go through greengrass-cli like any deployment (``--merge aws.greengrass.Nucleus=<v>``) and are
judged by what the core reports (``deployment status``: SUCCEEDED / FAILED and the outcome
SUCCESSFUL, FAILED_ROLLBACK_COMPLETE, FAILED_UNABLE_TO_ROLLBACK, FAILED_NO_STATE_CHANGE) and by
``component list``. V1 updates are jobs of the offline update service, applied by the core's OTA agent;
the job's status counters are checked as the service reports them. Core versions are
``fixtures/core-versions`` (2.1.0 good, 2.2.0 fails to start, 2.3.0 breaks its components). Every test
records a report row with versions before and after, the outcome and the time the core was unavailable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from harness.cloud.jobs import ACCEPTED_PAIRS
from harness.core.nucleus.ota import KEPT, LOST, CoreUpdate, update_core_v2
from harness.errors import InputError
from harness.fleet.backoff import BackoffPolicy
from harness.fleet.checks import describe
from harness.fleet.engine import FleetEngine
from harness.fleet.ledger import Ledger
from harness.fleet.plan import DiscoveryEndpoint, FleetConfig, make_plan
from harness.fleet.stand import provision_load_devices
from harness.paths import FIXTURES_DIR
from harness.pytest_ota import UPDATE_TIMEOUT_S, OtaStand

RECIPES = FIXTURES_DIR / "components" / "recipes"
BEAT = "com.example.Heartbeat"
BASE, GOOD, NO_START, UNHEALTHY = "2.0.0", "2.1.0", "2.2.0", "2.3.0"
DEPLOY_TIMEOUT_S = 90.0
READY = ("RUNNING", "FINISHED")
Report = Callable[[list[CoreUpdate], list[str]], None]


def _with_heartbeat(ota: OtaStand) -> list[str]:
    """Deploy the auto-start component an update must keep running; problems if it does not run."""
    info = ota.nucleus.deploy_and_wait(DEPLOY_TIMEOUT_S, recipe_dir=RECIPES, merge={BEAT: "1.0.0"})
    if not info.succeeded:
        return [f"setup: deploying {BEAT} failed: {info.summary()}"]
    return []


def _component_problems(ota: OtaStand, when: str) -> list[str]:
    comps = ota.nucleus.components()
    version, state = comps.get(BEAT, ("absent", "absent"))
    if version != "1.0.0" or state not in READY:
        return [f"{when}: {BEAT} is {version} {state}, not 1.0.0 RUNNING"]
    return []


def _update_problems(u: CoreUpdate, *, status: str, outcome: str, after: str) -> list[str]:
    problems = []
    if (u.status, u.outcome) != (status, outcome):
        problems.append(
            f"update to {u.requested} ended {u.status}/{u.outcome or '-'}, expected {status}/{outcome}"
            + (f" ({u.reason})" if u.reason else "")
        )
    if u.after != after:
        runs = u.after or "nothing"
        problems.append(f"after the update to {u.requested} the core runs {runs}, not {after}")
    return problems


# -- O1 ------------------------------------------------------------------------------------------------
@pytest.mark.requirement(
    "O1 (V2) an update to a newer nucleus succeeds: SUCCESSFUL, the core reports the new version, deployed "
    "components and their configuration are kept and run again, the core log is kept",
    source="scenarios.md ota O1; core-behaviour.md Updating the core software (V2)",
)
def test_o1_v2_update_to_newer_version(ota: OtaStand, report_update: Report) -> None:
    problems = _with_heartbeat(ota)
    log_before = ota.nucleus.core_log().splitlines()[:1]
    config_before = ota.nucleus.component_details()[BEAT].configuration
    u = update_core_v2(ota.nucleus, GOOD, timeout=UPDATE_TIMEOUT_S)
    problems += _update_problems(u, status="SUCCEEDED", outcome="SUCCESSFUL", after=GOOD)
    if not problems:
        ota.nucleus.wait_state(BEAT, READY, DEPLOY_TIMEOUT_S)
        problems += _component_problems(ota, "after the update")
        config_after = ota.nucleus.component_details()[BEAT].configuration
        if config_after != config_before:
            problems.append(f"{BEAT}'s configuration changed: {config_before} -> {config_after}")
        if ota.nucleus.core_log().splitlines()[:1] != log_before:
            problems.append("the core log (logs/greengrass.log) was not kept across the update")
    if not u.unavailable_s:
        problems.append("the time the core was unavailable during its restart was not measured (none or 0)")
    report_update([u], problems)


@pytest.mark.requirement(
    "O1 (V1) an OTA job for the core succeeds: the core serves the new version, the job counts one "
    "success; config, group config, local shadows and logs are kept, the credential cache and work "
    "queue are lost; the broker accepts clients again",
    source="scenarios.md ota O1; seed 004 (what is kept and lost, job status counters)",
)
def test_o1_v1_ota_job_keeps_state(ota: OtaStand, report_update: Report) -> None:
    from harness.core.base import wait_port

    before = ota.v1.state_digest()
    job = ota.job(GOOD)
    u = ota.run(job)
    after = ota.v1.state_digest()
    problems = _update_problems(u, status="SUCCEEDED", outcome="SUCCEEDED", after=GOOD)
    counters = ota.jobs.counters(job.id)
    if counters["succeeded"] != 1 or sum(counters.values()) != 1:
        problems.append(f"job status counters are {counters}, expected one succeeded")
    changed = [k for k in (*KEPT, "logs/greengrass.log:first-line") if before[k] != after[k] or not after[k]]
    if changed:
        problems.append(f"state that must be kept changed or vanished: {', '.join(changed)}")
    kept_lost = [k for k in LOST if after[k]]
    if kept_lost:
        problems.append(f"state a V1 update loses is still there: {', '.join(kept_lost)}")
    for ep in ota.cut.core.endpoints():
        try:
            wait_port(ep.host, ep.port, 60, what="the core's broker after the update")
        except Exception as exc:
            problems.append(f"the broker does not accept connections after the update: {exc}")
    report_update([u], problems)


# -- O2 ------------------------------------------------------------------------------------------------
@pytest.mark.requirement(
    "O2 a nucleus that fails to start is tried three times, then the old version runs again "
    "(restart_panic) and the update is reported FAILED_ROLLBACK_COMPLETE",
    source="scenarios.md ota O2; core-behaviour.md loader (3 tries, rollback, restart_panic)",
)
def test_o2_new_version_fails_to_start(ota: OtaStand, report_update: Report) -> None:
    problems = _with_heartbeat(ota)
    u = update_core_v2(ota.nucleus, NO_START, timeout=UPDATE_TIMEOUT_S)
    problems += _update_problems(u, status="FAILED", outcome="FAILED_ROLLBACK_COMPLETE", after=BASE)
    loader = ota.nucleus.read(f"{ota.nucleus.cli.root}/logs/loader.log")
    tries = sum(1 for line in loader.splitlines() if "nucleus-exited" in line and "code=1," in line)
    if u.after == BASE and tries != 3:
        problems.append(f"the loader tried the failing version {tries} times, not 3")
    if u.after == BASE and u.status == "FAILED" and "restart_panic" not in u.reason:
        problems.append(f"the failure does not name the restart_panic marker: {u.reason}")
    if u.after == BASE:
        ota.nucleus.wait_state(BEAT, READY, DEPLOY_TIMEOUT_S)
        problems += _component_problems(ota, "after the rollback")
    report_update([u], problems)


@pytest.mark.requirement(
    "O2 a nucleus that starts but leaves a component BROKEN fails the health check and is rolled back: "
    "FAILED_ROLLBACK_COMPLETE, the old version runs, the component runs again",
    source="scenarios.md ota O2; core-behaviour.md health check after restart",
)
def test_o2_new_version_fails_health_check(ota: OtaStand, report_update: Report) -> None:
    problems = _with_heartbeat(ota)
    u = update_core_v2(ota.nucleus, UNHEALTHY, timeout=UPDATE_TIMEOUT_S)
    problems += _update_problems(u, status="FAILED", outcome="FAILED_ROLLBACK_COMPLETE", after=BASE)
    if u.after == BASE:
        ota.nucleus.wait_state(BEAT, READY, DEPLOY_TIMEOUT_S)
        problems += _component_problems(ota, "after the rollback")
    report_update([u], problems)


# -- O3 ------------------------------------------------------------------------------------------------
@pytest.mark.requirement(
    "O3 managedRespawn: a missing, non-root-owned, wrongly permitted or failing pre/post script fails the "
    "update, and the core keeps running its old version",
    source="scenarios.md ota O3; seed 004 (managedRespawn scripts)",
)
@pytest.mark.parametrize(
    ("script", "how"),
    [
        ("ggc_pre_update.sh", "missing"),
        ("ota_pre_update.sh", "not_root_owned"),
        ("ota_post_update.sh", "group_executable"),
        ("ggc_post_update.sh", "failing"),
    ],
)
def test_o3_managed_respawn_bad_script(ota: OtaStand, report_update: Report, script: str, how: str) -> None:
    ota.v1.break_script(script, how)
    job = ota.job(GOOD)
    u = ota.run(job)
    problems = _update_problems(u, status="FAILED", outcome="FAILED", after=BASE)
    counters = ota.jobs.counters(job.id)
    if counters["failed"] != 1:
        problems.append(f"job status counters are {counters}, expected one failed")
    if u.status == "FAILED" and script not in u.reason:
        problems.append(f"the failure does not name {script}: {u.reason}")
    report_update([u], problems)


# -- O4 ------------------------------------------------------------------------------------------------
def _other_pair(os_label: str, arch: str) -> tuple[str, str]:
    """An accepted pair that is not this device's (same OS where possible)."""
    others = [p for p in ACCEPTED_PAIRS if p != (os_label, arch)]
    same_os = [p for p in others if p[0] == os_label]
    return (same_os or others)[0]


@pytest.mark.requirement(
    "O4 a job for another (or an unsupported) OS/architecture pair is rejected before anything changes; "
    "the update service refuses to create a job for an unsupported pair",
    source="scenarios.md ota O4; seed 004 (accepted OS/architecture pairs)",
)
def test_o4_wrong_os_architecture_rejected(ota: OtaStand, report_update: Report) -> None:
    problems: list[str] = []
    try:
        ota.job(GOOD, os="debian", arch=ota.profile.arch)
        problems.append("the update service created a job for debian, an OS it does not support")
    except InputError as exc:
        if "allowed pairs" not in str(exc):
            problems.append(f"refusing debian does not list the allowed pairs: {exc}")
    os_label, arch = _other_pair(ota.profile.os, ota.profile.arch)
    before = ota.v1.state_digest()
    job = ota.job(GOOD, os=os_label, arch=arch)
    u = ota.run(job)
    problems += _update_problems(u, status="REJECTED", outcome="REJECTED", after=BASE)
    counters = ota.jobs.counters(job.id)
    if counters["rejected"] != 1:
        problems.append(f"job status counters are {counters}, expected one rejected")
    if u.unavailable_s:
        problems.append(f"the core was down {u.unavailable_s:.1f} s for a job it rejected")
    if ota.v1.state_digest() != before:
        problems.append("a rejected job changed the core's state")
    report_update([u], problems)


@pytest.mark.requirement(
    "O4 less free disk space than the update requires rejects the job before anything changes",
    source="scenarios.md ota O4; seed 004 (>= 400 MB free)",
)
def test_o4_not_enough_free_disk_rejected(ota: OtaStand, report_update: Report) -> None:
    ota.v1.setup(min_free_bytes=1 << 50)  # a requirement no partition here can meet (1 PiB)
    before = ota.v1.state_digest()
    job = ota.job(GOOD)
    u = ota.run(job)
    problems = _update_problems(u, status="REJECTED", outcome="REJECTED", after=BASE)
    if u.status == "REJECTED" and "free" not in u.reason:
        problems.append(f"the rejection does not say free space is missing: {u.reason}")
    if ota.v1.state_digest() != before:
        problems.append("a rejected job changed the core's state")
    report_update([u], problems)


# -- O5 ------------------------------------------------------------------------------------------------
@pytest.mark.requirement(
    "O5 an update to the same or an older nucleus version is refused (FAILED_NO_STATE_CHANGE, the core "
    "stays up on its version); a downgrade goes through only when asked for (allowDowngrade)",
    source="scenarios.md ota O5",
)
def test_o5_same_or_older_version_refused(ota: OtaStand, report_update: Report) -> None:
    up = update_core_v2(ota.nucleus, GOOD, timeout=UPDATE_TIMEOUT_S)
    problems = _update_problems(up, status="SUCCEEDED", outcome="SUCCESSFUL", after=GOOD)
    updates = [up]
    if not problems:
        same = update_core_v2(ota.nucleus, GOOD, timeout=UPDATE_TIMEOUT_S)
        older = update_core_v2(ota.nucleus, BASE, timeout=UPDATE_TIMEOUT_S)
        updates += [same, older]
        for u in (same, older):
            problems += _update_problems(u, status="FAILED", outcome="FAILED_NO_STATE_CHANGE", after=GOOD)
            if u.unavailable_s:
                problems.append(f"a refused update to {u.requested} took the core down {u.unavailable_s} s")
        if not problems:
            asked = update_core_v2(ota.nucleus, BASE, timeout=UPDATE_TIMEOUT_S, allow_downgrade=True)
            updates.append(asked)
            problems += _update_problems(asked, status="SUCCEEDED", outcome="SUCCESSFUL", after=BASE)
    report_update(updates, problems)


# -- O6 ------------------------------------------------------------------------------------------------
O6_DEVICES = 6
O6_RATE = 2.0
#: Publishing lasts longer than an update takes even on an emulated ARMv6 board, so the window is inside.
O6_PUBLISH_S = 20.0


@pytest.mark.requirement(
    "O6 client messages sent during a core update are counted: the report shows how many were lost "
    "(seed 004: messages routed through the core in the update window are lost); every client "
    "reconnects after the update",
    source="scenarios.md ota O6; seed 004; fleet simulator (issue #6)",
)
def test_o6_messages_lost_during_update(ota: OtaStand, discovery: Any, report_update: Report) -> None:
    from harness.cloud.api import Cloud

    cut = ota.cut
    assert isinstance(cut.cloud, Cloud)
    job = ota.job(GOOD)
    done: list[CoreUpdate] = []

    def update() -> None:
        done.append(ota.run(job))

    cfg = FleetConfig(
        devices=O6_DEVICES,
        connect_rate=20,
        rate=O6_RATE,
        qos=1,
        duration_s=O6_PUBLISH_S,
        subscribers=1,
        storm="restart",  # the fleet's storm hook runs the update: it restarts the core's daemon
        storm_at_s=2.0,
        backoff=BackoffPolicy("full-jitter", 0.5, 3.0),
        reconnect_timeout_s=40,
        drain_s=2,
    )
    identities = provision_load_devices(cut.cloud, cut.fleet.core, cfg.devices)
    endpoint = DiscoveryEndpoint(discovery.host, discovery.port, str(cut.cloud.root_ca_path))
    plan = make_plan(cfg, identities, discovery=endpoint)
    ledger = Ledger(d.thing for d in plan.devices)
    FleetEngine(plan, [ledger], storm=update).run_sync()
    s = ledger.summary()
    problems: list[str] = []
    if not done:
        problems.append(f"the update never ran during the fleet's run\n{describe(s)}")
        report_update([], problems)
        return
    u = done[0]
    # every device publishes on a fixed schedule; what the schedule held but the subscriber never got
    # was lost: slots skipped while the core was down, publishes that failed, messages lost in transit
    scheduled = sum(
        max(0, math.ceil((O6_PUBLISH_S - float(getattr(d, "phase_s", 0.0))) * O6_RATE - 1e-9))
        for d in plan.devices
    )
    skipped = max(0, scheduled - s.published - s.publish_failed)
    lost = max(0, scheduled - s.received)
    u.details["messages"] = {
        "scheduled": scheduled,
        "published": s.published,
        "publish_failed": s.publish_failed,
        "skipped_while_down": skipped,
        "lost_in_transit": s.lost,
        "received": s.received,
        "lost_in_update_window": lost,
    }
    u.reason = (u.reason + "; " if u.reason else "") + (
        f"client messages: {scheduled} scheduled, {s.published} published, {s.received} received, "
        f"{lost} lost during the update window ({skipped} not sent while the core was down, "
        f"{s.publish_failed} failed, {s.lost} lost in transit)"
    )
    problems += _update_problems(u, status="SUCCEEDED", outcome="SUCCEEDED", after=GOOD)
    st = s.storm
    if st is None or st.devices == 0:
        problems.append(f"no client was connected when the update began\n{describe(s)}")
    elif st.reconnected < st.devices:
        problems.append(
            f"only {st.reconnected} of {st.devices} clients reconnected after the update\n{describe(s)}"
        )
    if s.published == 0:
        problems.append(f"the clients published nothing, so nothing was measured\n{describe(s)}")
    report_update([u], problems)
