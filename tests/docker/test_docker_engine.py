"""The private engine: images of the board's architecture run, and nothing is left after close or a kill."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.docker.edge import container_env
from harness.docker.engine import PodmanEngine, gc_stale_engines, netns_exists
from harness.docker.images import APP_REPO, image_tar, import_app_image
from harness.docker.leaks import find_leaks
from harness.paths import state_dir
from harness.profiles import find_profile

pytestmark = pytest.mark.qemu


def test_image_holds_only_the_application_from_the_board_tree(tmp_path: Path) -> None:
    from harness.rootfs import RootfsSpec, ensure_rootfs

    profile = find_profile("qemu-aarch64")
    assert profile.userland is not None
    tree = ensure_rootfs(RootfsSpec.from_userland(profile.userland).base)
    data = image_tar(tree, "arm64")
    assert len(data) < 8 * 1024 * 1024, f"the application image is {len(data)} bytes, not a few MB"
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
    assert {
        "usr/bin/dash",
        "usr/bin/sleep",
        "usr/local/bin/ggapp",
        "usr/lib/aarch64-linux-gnu/libc.so.6",
    } <= names


#: aarch64 containers are checked by the docker suite itself (DK1); armv6l is the case QEMU_CPU decides
@pytest.mark.parametrize("board", ["native-x86_64", "qemu-armv6l"])
def test_engine_runs_board_images_and_leaves_nothing(board: str) -> None:
    profile = find_profile(board)
    base = state_dir()
    before = _host_links()
    engine = PodmanEngine(base, container_env=container_env(profile))  # armv6l: uname says armv7l without it
    try:
        ref = import_app_image(engine, profile)
        res = engine.podman("run", "--rm", ref, "/bin/uname", "-m", timeout=120)
        assert res.ok and res.stdout.strip() == profile.arch, res.evidence()
        res = engine.podman("run", "-d", "--name", "probe", ref, timeout=120)
        assert res.ok, res.evidence()
        mine = [line for line in find_leaks(base) if engine.root.name in line]
        assert any("docker container probe" in line for line in mine), mine
        assert any(f"docker image {APP_REPO}:v1" in line for line in mine), mine
        new_links = _host_links() - before
        assert not new_links, f"the engine made network interfaces on the host: {sorted(new_links)}"
    finally:
        engine.close()
    assert not engine.root.exists() and not netns_exists(engine.netns)
    assert not [line for line in find_leaks(base) if engine.root.name in line]


def _host_links() -> set[str]:
    """Bridges and veth pairs podman would make on the host if it ran outside its namespace."""
    return {p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(("cni-", "veth", "podman"))}


def test_engine_of_a_killed_harness_is_reported_then_collected() -> None:
    # a base of its own: engines other sessions create in the shared state dir must not collect this one first
    base = Path(tempfile.mkdtemp(prefix="killed-", dir=state_dir()))
    engine = PodmanEngine(base)
    info = json.loads((engine.root / "engine.json").read_text())
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=30)
    dead = gone.pid  # a harness process that no longer exists
    (engine.root / "engine.json").write_text(json.dumps({**info, "owner": dead}))
    try:
        leaks = [line for line in find_leaks(base) if engine.root.name in line]
        assert any(line.startswith("docker engine directory") for line in leaks), leaks
        assert any(f"network namespace {engine.netns}" in line for line in leaks), leaks
        assert str(engine.root) in gc_stale_engines(base)
        assert not engine.root.exists() and not netns_exists(engine.netns)
    finally:
        engine.close()
        shutil.rmtree(base, ignore_errors=True)
