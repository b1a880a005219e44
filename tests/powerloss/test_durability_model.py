"""Unit tests of the durability model alone (no FUSE, no target): live tree in, durable tree out.

The model is driven the way the FUSE file system drives it (file system calls on the live tree, then the
model's fsync/fsyncdir/commit hooks); "the cut" is simply reading the durable tree. The end-to-end proof
through a real FUSE mount in a real target is tests/powerloss/test_layer.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.powerloss.cuts import WriteCut
from harness.powerloss.durability import DurabilityModel


@pytest.fixture
def model(tmp_path: Path) -> DurabilityModel:
    durable, live = tmp_path / "durable", tmp_path / "live"
    (durable / "d").mkdir(parents=True)
    (durable / "d" / "f").write_text("old")
    live.mkdir()
    m = DurabilityModel(live=str(live), durable=str(durable))
    m.load()
    return m


def fsync(m: DurabilityModel, rel: str) -> None:
    fd = os.open(m.lpath(rel), os.O_RDONLY)
    try:
        m.sync_file(fd)
    finally:
        os.close(fd)


def durable(m: DurabilityModel, rel: str) -> str | None:
    p = Path(m.dpath(rel))
    return p.read_text() if p.is_file() else None


def test_load_copies_and_maps(model: DurabilityModel) -> None:
    assert Path(model.lpath("d/f")).read_text() == "old"
    assert model.names[os.lstat(model.lpath("d/f")).st_ino] == {"d/f"}


def test_fsync_of_a_file_keeps_its_content_under_its_durable_name(model: DurabilityModel) -> None:
    Path(model.lpath("d/f")).write_text("new")
    assert durable(model, "d/f") == "old"
    fsync(model, "d/f")
    assert durable(model, "d/f") == "new"


def test_an_fsync_cut_half_way_keeps_what_was_durable_before(
    model: DurabilityModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cut can kill the model inside an fsync: an append's fsync must never expose an empty file.

    This was a real flake of the core's config store on the layer (the whole config.tlog lost): the
    model used to truncate the durable file and rewrite it.
    """
    with open(model.lpath("d/f"), "a") as fh:
        fh.write(" and appended")
    writes: list[tuple[int, int]] = []

    def dies_after_the_first_write(fd: int, data: bytes, offset: int) -> int:
        writes.append((offset, len(data)))
        raise SystemExit("power cut inside the fsync")

    monkeypatch.setattr(os, "pwrite", dies_after_the_first_write)
    monkeypatch.setattr(os, "ftruncate", lambda *a: pytest.fail("an append must not truncate"))
    with pytest.raises(SystemExit):
        fsync(model, "d/f")
    assert writes == [(3, len(" and appended"))], "only the appended bytes are written"
    assert durable(model, "d/f") == "old"


def test_load_discards_the_models_half_done_entries(tmp_path: Path) -> None:
    durable_dir, live = tmp_path / "durable", tmp_path / "live"
    (durable_dir / ".gg-powerloss-tmp.gone.alts" / "x").mkdir(parents=True)
    (durable_dir / ".gg-powerloss-tmp.f").write_text("half")
    (durable_dir / "f").write_text("kept")
    live.mkdir()
    DurabilityModel(live=str(live), durable=str(durable_dir)).load()
    assert sorted(os.listdir(live)) == ["f"] and sorted(os.listdir(durable_dir)) == ["f"]


def test_a_renamed_file_keeps_its_durable_name_until_the_directory_is_synced(model: DurabilityModel) -> None:
    os.rename(model.lpath("d/f"), model.lpath("d/g"))
    model.note_rename("d/f", "d/g")
    Path(model.lpath("d/g")).write_text("moved")
    fsync(model, "d/g")
    assert durable(model, "d/f") == "moved" and durable(model, "d/g") is None
    model.sync_dir("d")
    assert durable(model, "d/g") == "moved" and durable(model, "d/f") is None


def test_nameless_fsync_then_directory_sync(model: DurabilityModel) -> None:
    Path(model.lpath("d/n")).write_text("synced")
    fsync(model, "d/n")
    assert durable(model, "d/n") is None
    Path(model.lpath("d/n")).write_text("synced, then rewritten")
    model.sync_dir("d")
    assert durable(model, "d/n") == "synced", "the entry is durable with the data of the last fsync"


def test_new_directory_sync_creates_its_parents_entries(model: DurabilityModel) -> None:
    os.makedirs(model.lpath("a/b"))
    Path(model.lpath("a/b/x")).write_text("x")
    fsync(model, "a/b/x")
    model.sync_dir("a/b")
    assert durable(model, "a/b/x") == "x"


def test_cross_directory_move_is_one_transaction(model: DurabilityModel) -> None:
    os.mkdir(model.lpath("e"))
    model.sync_dir("")
    os.rename(model.lpath("d/f"), model.lpath("e/f"))
    model.note_rename("d/f", "e/f")
    model.sync_dir("e")
    assert durable(model, "e/f") == "old" and durable(model, "d/f") is None


def test_journal_commit_keeps_truncations_and_entries_not_data(model: DurabilityModel) -> None:
    with open(model.lpath("d/f"), "w") as fh:  # rewritten in place, never fsynced
        model.note_shrunk(os.fstat(fh.fileno()).st_ino, 0)
        fh.write("new content")
    Path(model.lpath("d/created")).write_text("data")
    model.note_entries_changed("d")
    model.commit_metadata()
    assert durable(model, "d/f") == "", "the truncation is metadata: committed; the data is not"
    assert durable(model, "d/created") == "", "a new entry is committed, its data is not"


def test_sync_all_makes_durable_equal_live(model: DurabilityModel) -> None:
    os.makedirs(model.lpath("x/y"))
    Path(model.lpath("x/y/z")).write_text("z")
    os.symlink("y/z", model.lpath("x/link"))
    os.unlink(model.lpath("d/f"))
    model.sync_all()
    assert durable(model, "x/y/z") == "z"
    assert os.readlink(model.dpath("x/link")) == "y/z"
    assert durable(model, "d/f") is None


@pytest.mark.parametrize("text", ["write", "write:f", "truncate:f@1", "write:f@0", "write:@2", "write:f@x"])
def test_bad_cut_names_the_allowed_form(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"expected <op>:<path>@<N> with op one of write, unlink, rename, symlink"
    ):
        WriteCut.parse(text)


def test_cut_parse_and_label() -> None:
    cut = WriteCut.parse("unlink:/alts/current@2")
    assert (cut.op, cut.path, cut.nth, cut.label()) == ("unlink", "alts/current", 2, "unlink:alts/current@2")
