"""The power-loss layer itself, proven before any core runs on it (issue #8, step 1).

Each test writes through the layer from the target's own python3, cuts the power, powers on and reads what
the disk kept: fsynced data survives; unsynced data is lost; a rename or a new file whose directory was not
fsynced is lost (as a real kernel may), a cross-directory rename is all or nothing; a clean power-off keeps
everything; the cut after the Nth write freezes exactly there. Then the core's own persistence code
(``ConfigStore``) runs on the layer and is cut at random moments: every acknowledged commit survives.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from harness.core.nucleus.cli_adapter import ReferenceNucleusAdapter
from harness.powerloss.cuts import WriteCut
from harness.powerloss.layer import PowerLossLayer
from harness.profiles import find_profile
from harness.targets.qemu_user import QemuUserTarget

pytestmark = [pytest.mark.qemu, pytest.mark.xdist_group("powerloss-layer")]
ROOT = "/plt"
HELPERS = r"""
import os, sys
def w(path, data, sync=False, mode="wb"):
    with open(path, mode) as fh:
        fh.write(data)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())
def sync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
"""


@pytest.fixture(scope="module")
def target() -> Iterator[QemuUserTarget]:
    t = QemuUserTarget(find_profile("native-x86_64"), instance="powerloss-layer")
    t.power_on()
    yield t
    t.close()


@pytest.fixture
def layer(target: QemuUserTarget) -> Iterator[PowerLossLayer]:
    if not target.is_on:
        target.power_on()
    target.run(["rm", "-rf", ROOT], timeout=30)
    target.run(["mkdir", "-p", f"{ROOT}/a", f"{ROOT}/b"], timeout=30)
    target.run(["sh", "-c", f"printf old > {ROOT}/a/existing"], timeout=30)
    pl = PowerLossLayer(target, ROOT)
    pl.mount()
    yield pl
    target.power_cut()
    pl.reap()


def py(target: QemuUserTarget, code: str, timeout: float = 60) -> str:
    res = target.run(["python3", "-c", HELPERS + code], timeout=timeout, cwd=ROOT)
    assert res.ok, res.evidence()
    return res.stdout


def cut_and_power_on(target: QemuUserTarget, layer: PowerLossLayer) -> None:
    """Pull the plug and power on again; the layer is not mounted, so reads show the disk itself."""
    target.power_cut()
    layer.reap()
    target.power_on()


def listing(target: QemuUserTarget, d: str) -> list[str]:
    res = target.run(["ls", "-A", f"{ROOT}/{d}"], timeout=30)
    return sorted(res.stdout.split())


def test_fsynced_data_survives_a_cut(target: QemuUserTarget, layer: PowerLossLayer) -> None:
    py(
        target,
        "w('a/new', b'synced', sync=True); sync_dir('a')\n"
        "w('a/existing', b'rewritten', sync=True)\n"
        "fd = os.open('a/log', os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_SYNC, 0o600)\n"
        "os.write(fd, b'one\\n'); os.write(fd, b'two\\n'); os.close(fd); sync_dir('a')\n",
    )
    cut_and_power_on(target, layer)
    assert target.read_text(f"{ROOT}/a/new") == "synced"
    assert target.read_text(f"{ROOT}/a/existing") == "rewritten"
    assert target.read_text(f"{ROOT}/a/log") == "one\ntwo\n"
    mode = target.run(["stat", "-c", "%a", f"{ROOT}/a/log"], timeout=30).stdout.strip()
    assert mode == "600"


def test_unsynced_data_is_lost(target: QemuUserTarget, layer: PowerLossLayer) -> None:
    out = py(
        target,
        "w('a/existing', b'unsynced rewrite')\n"
        "w('a/never', b'never synced')\n"
        "w('b/named', b'content never synced'); sync_dir('b')\n"
        "print(open('a/existing').read())\n",
    )
    assert out.strip() == "unsynced rewrite", "the live view must show the write before the cut"
    cut_and_power_on(target, layer)
    assert target.read_text(f"{ROOT}/a/existing") == "old", "an unsynced rewrite must be lost"
    assert listing(target, "a") == ["existing"], "a new file whose directory was not fsynced must be lost"
    assert target.read_text(f"{ROOT}/b/named") == "", (
        "a file whose entry was fsynced but not its data is empty after a cut (delayed allocation)"
    )


def test_rename_without_directory_fsync_is_lost(target: QemuUserTarget, layer: PowerLossLayer) -> None:
    py(
        target,
        "w('a/meta+', b'new', sync=True); sync_dir('a')\n"
        "w('a/meta', b'old', sync=True); sync_dir('a')\n"
        "os.replace('a/meta+', 'a/meta')\n"
        "w('b/kept+', b'new', sync=True); sync_dir('b'); os.replace('b/kept+', 'b/kept'); sync_dir('b')\n",
    )
    cut_and_power_on(target, layer)
    assert target.read_text(f"{ROOT}/a/meta") == "old", "the rename was never made durable"
    assert target.read_text(f"{ROOT}/a/meta+") == "new"
    assert listing(target, "b") == ["kept"]
    assert target.read_text(f"{ROOT}/b/kept") == "new"


def test_cross_directory_rename_is_all_or_nothing(target: QemuUserTarget, layer: PowerLossLayer) -> None:
    py(
        target,
        "w('a/moving', b'data', sync=True); sync_dir('a')\n"
        "os.mkdir('a/tree'); w('a/tree/leaf', b'leaf', sync=True); sync_dir('a/tree'); sync_dir('a')\n"
        "os.rename('a/moving', 'b/moved'); os.rename('a/tree', 'b/tree'); sync_dir('b')\n",
    )
    cut_and_power_on(target, layer)
    assert listing(target, "a") == ["existing"]
    assert listing(target, "b") == ["moved", "tree"]
    assert target.read_text(f"{ROOT}/b/moved") == "data"
    assert target.read_text(f"{ROOT}/b/tree/leaf") == "leaf"


def test_clean_power_off_keeps_everything(target: QemuUserTarget, layer: PowerLossLayer) -> None:
    py(target, "w('a/existing', b'clean'); os.mkdir('a/d'); w('a/d/f', b'f')\n")
    target.power_off()
    layer.reap()
    target.power_on()
    assert target.read_text(f"{ROOT}/a/existing") == "clean"
    assert target.read_text(f"{ROOT}/a/d/f") == "f"


def test_cut_after_the_nth_write(target: QemuUserTarget, layer: PowerLossLayer) -> None:
    target.power_cut()
    layer.reap()
    target.power_on()
    cutting = PowerLossLayer(target, ROOT, write_cut=WriteCut("a/log", 3))
    cutting.mount()
    proc = target.popen(
        [
            "python3",
            "-c",
            HELPERS
            + "for i in range(5):\n"
            + "    w('a/log', b'%d\\n' % i, sync=True, mode='ab'); sync_dir('a')\n",
        ],
        cwd=ROOT,
    )
    try:
        assert cutting.wait_cut(30) == "write:a/log@3"
        assert proc.poll() is None, "the writer must be frozen at the cut point"
        cut_and_power_on(target, cutting)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert target.read_text(f"{ROOT}/a/log") == "0\n1\n", "the third write was never fsynced"


def test_journal_mode_commits_metadata_not_data(target: QemuUserTarget, layer: PowerLossLayer) -> None:
    """ext4-like ordered journal: any fsync commits every metadata change so far, but not others' data."""
    target.power_cut()
    layer.reap()
    target.power_on()
    journal = PowerLossLayer(target, ROOT, commit_s=3600.0)  # commits only on fsync in this test
    journal.mount()
    py(
        target,
        "w('a/existing', b'rewritten in place, never fsynced')\n"
        "w('a/renamed+', b'R', sync=True); os.replace('a/renamed+', 'a/renamed')\n"
        "w('b/created', b'never fsynced')\n"
        "w('b/other', b'x', sync=True)\n"
        "w('b/after', b'after the last fsync')\n",
    )
    cut_and_power_on(target, journal)
    assert target.read_text(f"{ROOT}/a/existing") == "", "truncate committed, data not: a zero-length file"
    assert listing(target, "a") == ["existing", "renamed"], "the rename was committed by the later fsync"
    assert target.read_text(f"{ROOT}/a/renamed") == "R"
    assert listing(target, "b") == ["created", "other"], "entries after the last commit are lost"
    assert target.read_text(f"{ROOT}/b/created") == ""


CONFIG_LOOP = r"""
import sys
sys.path.insert(0, "/plt/lib")
from ggnucleus.persist import ConfigStore
store = ConfigStore("/plt/config", atomic=len(sys.argv) < 2 or sys.argv[1] == "1", compact_after=7)
store.load()
i = int(store.get(["counter"], 0))
print("start", i, flush=True)
while True:
    i += 1
    store.commit([(["counter"], "changed", i), (["pair"], "changed", [i, i])])
    print("ack", i, flush=True)
"""


def test_core_config_store_keeps_every_acknowledged_commit(
    target: QemuUserTarget, layer: PowerLossLayer
) -> None:
    """The core's real persistence code (tlog appends, compaction by renames) on the layer, cut at random."""
    cut_and_power_on(target, layer)  # installed like a core: on the disk, before the layer is mounted
    ReferenceNucleusAdapter(root=ROOT, python="/usr/bin/python3").install(target)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    acked = 0
    for cut in range(4):
        layer.mount()
        proc = target.popen(["python3", "-c", CONFIG_LOOP, "1"])
        assert proc.stdout is not None
        first = proc.stdout.readline().decode().split()
        if first[:1] != ["start"]:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"seed {seed}, cut {cut}: the store did not load: {first} {err.decode()[-800:]}")
        assert int(first[1]) >= acked, (
            f"seed {seed}, cut {cut}: acknowledged commit {acked} lost (loaded {first[1]})"
        )
        end = time.monotonic() + rng.uniform(0.2, 1.2)
        last = int(first[1])
        while time.monotonic() < end:
            line = proc.stdout.readline().decode().split()
            if line[:1] == ["ack"]:
                last = int(line[1])
        target.power_cut()
        layer.reap()
        proc.wait(timeout=30)
        target.power_on()
        acked = last
    layer.mount()
    out = py(target, CONFIG_LOOP.replace("while True", "while False"), timeout=60)
    assert int(out.split()[1]) >= acked
