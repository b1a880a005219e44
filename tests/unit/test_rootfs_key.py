"""Root file system cache keys and the half-built-entry rule (no mmdebstrap needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import rootfs
from harness.rootfs import RootfsSpec


def test_key_depends_on_content_only() -> None:
    a = RootfsSpec("bookworm", "armel", packages=("python3", "bash"))
    b = RootfsSpec("bookworm", "armel", packages=("python3", "bash"))
    assert a.key == b.key
    assert a.key != RootfsSpec("bookworm", "armhf", packages=("python3", "bash")).key
    assert a.key != RootfsSpec("bookworm", "armel", packages=("python3",)).key
    assert a.key != RootfsSpec("bookworm", "armel", packages=("python3", "bash"), customize=("true",)).key
    assert a.key.startswith("bookworm-armel-")


def test_customized_spec_derives_from_base() -> None:
    spec = RootfsSpec("bookworm", "amd64", customize=('rm -f "$1"/bin/bash',))
    assert spec.base.customize == ()
    assert spec.base.key != spec.key


def test_half_built_entry_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    spec = RootfsSpec("bookworm", "amd64", packages=("python3",))
    half = tmp_path / "rootfs" / spec.key
    half.mkdir(parents=True)
    (half / "junk").write_text("interrupted build")
    built: list[Path] = []

    def fake_build(s: RootfsSpec, dest: Path, log: Path) -> None:
        dest.mkdir()
        (dest / "etc").mkdir()
        built.append(dest)

    monkeypatch.setattr(rootfs, "_mmdebstrap", fake_build)
    tree = rootfs.ensure_rootfs(spec)
    assert built and tree == half
    assert not (tree / "junk").exists()
    assert rootfs.is_complete(tree)
    # a second call uses the cache
    rootfs.ensure_rootfs(spec)
    assert len(built) == 1


def test_failed_build_leaves_no_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    spec = RootfsSpec("bookworm", "amd64")

    def failing(s: RootfsSpec, dest: Path, log: Path) -> None:
        dest.mkdir()
        raise rootfs.InfraError("mirror unreachable")

    monkeypatch.setattr(rootfs, "_mmdebstrap", failing)
    with pytest.raises(rootfs.InfraError):
        rootfs.ensure_rootfs(spec)
    assert not any(p.is_dir() for p in (tmp_path / "rootfs").iterdir())
    assert os.listdir(tmp_path / "rootfs")  # only the lock file remains
