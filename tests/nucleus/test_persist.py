"""Crash safety of the agent's durable state (core-behaviour.md "Persistence").

A child process writes; it is killed at each named step of a write (``GGNUCLEUS_CRASH_AT``) or at random
moments; the parent reloads and checks the invariants a core must keep after a power cut: the
configuration is the last committed state, never empty or half of a transaction. The seeded
``non_atomic_config_write`` fault is shown to break them. End to end, the agent keeps its components and
resumes an interrupted deployment after a restart and after a power cut.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nucleus_support import WAIT_S, MakeNucleus, write_recipe

from harness.core.nucleus.device.persist import (
    CHANGED,
    CRASH_ENV,
    REMOVED,
    TLOG,
    ConfigStore,
    read_json_durably,
    replay,
    write_json_durably,
)
from harness.targets.local import LocalTarget

REPO = Path(__file__).resolve().parents[2]
A = {"thingName": "core-A", "certificateFilePath": "/greengrass/certs/a.pem"}
B = {"thingName": "core-B", "certificateFilePath": "/greengrass/certs/b.pem"}
CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[4])
from harness.core.nucleus.device.persist import ConfigStore, write_json_durably
directory, op, atomic = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
new = {"thingName": "core-B", "certificateFilePath": "/greengrass/certs/b.pem"}
if op == "config":
    store = ConfigStore(directory, atomic=atomic, compact_after=1)  # the commit is followed by a compaction
    store.load()
    store.commit([(["system", k], "changed", v) for k, v in new.items()])
elif op == "meta":
    write_json_durably(os.path.join(directory, "deployment.json"), new, atomic=atomic)
elif op == "loop":
    store = ConfigStore(directory, atomic=atomic, compact_after=5)
    store.load()
    i = int(store.get(["counter"], 0))
    while True:
        i += 1
        store.commit([(["counter"], "changed", i), (["pair"], "changed", [i, i])])
        print(i, flush=True)
"""


def _child(directory: Path, op: str, *, atomic: bool = True, crash_at: str = "") -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), op, "1" if atomic else "0", str(REPO)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _committed_a(directory: Path) -> None:
    store = ConfigStore(str(directory))
    store.load()
    store.commit([(["system", k], CHANGED, v) for k, v in A.items()])
    write_json_durably(str(directory / "deployment.json"), A)


def _system(directory: Path) -> dict[str, str]:
    store = ConfigStore(str(directory))
    store.load()
    return dict(store.get(["system"], {}) or {})


def test_commit_replay_and_compaction(tmp_path: Path) -> None:
    store = ConfigStore(str(tmp_path), compact_after=4)
    store.load()
    store.commit(
        [(["services", "a"], CHANGED, {"version": "1.0.0"}), (["system", "thingName"], CHANGED, "t")]
    )
    store.commit([(["services", "b"], CHANGED, {"version": "2.0.0"})])
    store.commit([(["services", "a"], REMOVED, None)])
    reloaded = ConfigStore(str(tmp_path))
    assert reloaded.load() == {"services": {"b": {"version": "2.0.0"}}, "system": {"thingName": "t"}}
    lines = (tmp_path / TLOG).read_text().splitlines()
    assert len(lines) <= 3, "the log was not compacted"  # two snapshot records and their commit
    record = json.loads(lines[0])
    assert set(record) == {"TS", "TP", "W", "V"} and record["W"] == "changed"
    assert not list(tmp_path.glob(TLOG + "[+~]"))


def test_torn_and_uncommitted_tails_are_dropped_and_repaired(tmp_path: Path) -> None:
    _committed_a(tmp_path)
    good = (tmp_path / TLOG).read_bytes()
    uncommitted = json.dumps({"TS": 1, "TP": ["system", "thingName"], "W": "changed", "V": "core-B"}) + "\n"
    for tail in (uncommitted, uncommitted[:17], "\x00" * 40):
        (tmp_path / TLOG).write_bytes(good + tail.encode())
        assert _system(tmp_path) == A, f"tail {tail[:20]!r} changed the configuration"
        _, _, clean, _ = replay(str(tmp_path / TLOG))
        assert clean, "loading did not rewrite a well-formed log"
        store = ConfigStore(str(tmp_path))
        store.load()
        store.commit([(["system", "thingName"], CHANGED, "core-C")])  # appends after the repair work
        assert _system(tmp_path)["thingName"] == "core-C"
        store.commit([(["system", "thingName"], CHANGED, "core-A")])
        good = (tmp_path / TLOG).read_bytes()


CONFIG_POINTS = {
    "tlog:torn": A,
    "tlog:committed": B,
    "compact:plus-written": B,
    "compact:backup-moved": B,
    "compact:committed": B,
}


@pytest.mark.parametrize("point", sorted(CONFIG_POINTS))
def test_config_survives_a_crash_at_every_step(tmp_path: Path, point: str) -> None:
    _committed_a(tmp_path)
    child = _child(tmp_path, "config", crash_at=point)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, f"the writer did not reach {point}"
    assert _system(tmp_path) == CONFIG_POINTS[point]
    assert _system(tmp_path) == CONFIG_POINTS[point], "a second load (after the repair) differs"
    assert not (tmp_path / (TLOG + "+")).exists() and not (tmp_path / (TLOG + "~")).exists()


@pytest.mark.parametrize(
    ("point", "expected"), [("meta:plus-written", A), ("meta:backup-moved", A), ("meta:committed", B)]
)
def test_metadata_survives_a_crash_at_every_step(
    tmp_path: Path, point: str, expected: dict[str, str]
) -> None:
    _committed_a(tmp_path)
    child = _child(tmp_path, "meta", crash_at=point)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert read_json_durably(str(tmp_path / "deployment.json")) == expected


@pytest.mark.parametrize(
    ("op", "point"),
    [("config", "compact:truncated"), ("config", "compact:half-written"), ("meta", "meta:truncated")],
)
def test_non_atomic_write_fault_loses_state_on_a_crash(tmp_path: Path, op: str, point: str) -> None:
    """The seeded defect: the same crash leaves an empty or torn file, which the checks above catch."""
    _committed_a(tmp_path)
    child = _child(tmp_path, op, atomic=False, crash_at=point)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    if op == "config":
        assert _system(tmp_path).get("thingName", "") == "", "the fault should have lost the thing name"
    else:
        assert read_json_durably(str(tmp_path / "deployment.json")) is None


def test_random_kills_never_lose_an_acknowledged_commit(tmp_path: Path) -> None:
    """SIGKILL the writer at random moments (during appends and compactions); reload after each."""
    rng = random.Random(7)
    last_ack = 0
    for _ in range(12):
        child = _child(tmp_path, "loop")
        assert child.stdout is not None
        fd = child.stdout.fileno()
        os.set_blocking(fd, False)
        buf = b""
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        while time.monotonic() < deadline:
            try:
                buf += os.read(fd, 65536)
            except BlockingIOError:
                time.sleep(0.005)
        child.kill()
        os.set_blocking(fd, True)
        while chunk := os.read(fd, 65536):
            buf += chunk
        child.wait(timeout=30)
        acks = [int(x) for x in buf.decode().split("\n")[:-1] if x.strip()]  # complete lines only
        last_ack = acks[-1] if acks else last_ack  # nothing acknowledged: the last reload is the floor
        tree = ConfigStore(str(tmp_path)).load()
        counter = tree.get("counter", 0)
        assert tree.get("pair", [0, 0]) == [counter, counter], f"a torn transaction was replayed: {tree}"
        assert last_ack <= counter <= last_ack + 1, f"acknowledged {last_ack}, reloaded {counter}"
        last_ack = counter


# -- end to end: the agent ------------------------------------------------------------------------
def test_agent_restart_keeps_components_config_and_history(make_nucleus: MakeNucleus, tmp_path: Path) -> None:
    nucleus = make_nucleus()
    write_recipe(
        tmp_path, "Keep", lifecycle={"Run": "echo {configuration:/Word}; exec sleep 60"}, config={"Word": "a"}
    )
    dep = nucleus.deploy(
        recipe_dir=tmp_path, merge={"Keep": "1.0.0"}, update_config={"Keep": {"MERGE": {"Word": "b"}}}
    )
    assert nucleus.wait_deployment(dep, WAIT_S).succeeded
    nucleus.stop(timeout=10)
    assert not nucleus.is_running()
    nucleus.start(timeout=30)
    info = nucleus.wait_state("Keep", {"RUNNING"}, WAIT_S)
    assert (info.version, info.configuration) == ("1.0.0", {"Word": "b"})
    assert nucleus.deployment(dep).succeeded
    assert "Keep" in json.dumps(ConfigStore(nucleus.cli.root + "/config").load())


def test_power_cut_during_a_deployment_resumes_it(
    make_nucleus: MakeNucleus, host_target: LocalTarget, tmp_path: Path
) -> None:
    nucleus = make_nucleus()
    write_recipe(tmp_path, "Slow", lifecycle={"Install": "sleep 1", "Run": "echo up; exec sleep 60"})
    dep = nucleus.deploy(recipe_dir=tmp_path, merge={"Slow": "1.0.0"})
    nucleus.wait_state("Slow", {"NEW"}, WAIT_S)  # planned and committed; its install is running
    host_target.power_cut()  # the agent and the install die at once
    host_target.power_on()
    assert not nucleus.is_running()
    nucleus.start(timeout=30)
    info = nucleus.wait_deployment(dep, WAIT_S)
    assert info.succeeded, info.raw
    assert nucleus.components()["Slow"] == ("1.0.0", "RUNNING")
    assert "deployment-resume" in nucleus.core_log()
