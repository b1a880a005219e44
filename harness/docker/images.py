"""Application images made from the profile's own root file system, so containers run the board's code.

No registry is reachable here, and a Debian tree is 200-270 MB: the image takes only what the test
application needs from the cached tree (shell, ``sleep``, ``uname``, ``cat``, the C library and its loader,
kept as the tree's own files and symlinks) plus a small script, about 2 MB, imported with ``podman import``
and the profile's architecture, in well under a second.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from harness.docker.engine import PodmanEngine
from harness.errors import InfraError, InputError
from harness.profiles import DeviceProfile

#: Debian architecture -> OCI (architecture, variant).
OCI_ARCH: dict[str, tuple[str, str]] = {
    "amd64": ("amd64", ""),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", ""),
}
#: Members of the tree the application needs (resolved inside the tree; symlinks are kept as symlinks).
PROGRAMS = ("usr/bin/dash", "usr/bin/sh", "usr/bin/sleep", "usr/bin/uname", "usr/bin/cat", "usr/bin/echo")
TOP_LINKS = ("bin", "lib", "lib64", "sbin")
LIBS = ("libc.so.6",)
#: The test application: says which architecture it runs on, then idles until told to stop.
APP_SCRIPT = """#!/bin/sh
echo "ggapp ${APP_NAME:-app} running on $(uname -m) (build ${GGAPP_BUILD:-1})"
trap 'echo "ggapp ${APP_NAME:-app} stopping"; exit 0' TERM INT
while :; do sleep 1 & wait $!; done
"""
APP_PATH = "usr/local/bin/ggapp"
APP_REPO = "localhost/ggapp"


def _members(tree: Path, arch: str) -> list[str]:
    names: list[str] = [n for n in TOP_LINKS if (tree / n).is_symlink()]
    names += [p for p in PROGRAMS if (tree / p).exists() or (tree / p).is_symlink()]
    libdirs = [d for d in (tree / "usr/lib").glob("*-linux-gnu*") if d.is_dir()]
    if not libdirs:
        raise InfraError(f"{tree}: no usr/lib/<triplet> directory; is this a Debian {arch} tree?")
    for d in libdirs:
        names += [str(p.relative_to(tree)) for p in d.iterdir() if p.name in LIBS or p.name.startswith("ld-")]
    for loader_dir in ("usr/lib", "usr/lib64"):
        names += [
            str(p.relative_to(tree))
            for p in (tree / loader_dir).glob("ld-*")
            if p.is_symlink() or p.is_file()
        ]
    names += ["etc/passwd", "etc/group"]
    return sorted(dict.fromkeys(names))


def image_tar(tree: Path, arch: str) -> bytes:
    """A tar of the application's files from ``tree`` plus the application script."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in _members(tree, arch):
            tar.add(tree / name, arcname=name, recursive=False)
        for d in ("usr/local", "usr/local/bin", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        data = APP_SCRIPT.encode()
        info = tarfile.TarInfo(APP_PATH)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def import_app_image(
    engine: PodmanEngine, profile: DeviceProfile, tags: tuple[str, ...] = ("v1", "v2"), *, build: int = 1
) -> str:
    """Build the application image from the profile's cached root file system; returns its first reference."""
    from harness.rootfs import RootfsSpec, ensure_rootfs

    if profile.userland is None:
        raise InputError(
            f"{profile.name}: field 'userland' is needed to build images of the board's architecture"
        )
    arch = profile.userland.architecture
    if arch not in OCI_ARCH:
        raise InputError(
            f"{profile.name}: userland.architecture {arch!r} has no image mapping; allowed: "
            + ", ".join(OCI_ARCH)
        )
    tree = ensure_rootfs(RootfsSpec.from_userland(profile.userland).base)
    oci_arch, variant = OCI_ARCH[arch]
    ref = f"{APP_REPO}:{tags[0]}"
    argv = [
        "import",
        "--arch",
        oci_arch,
        "--change",
        f'CMD ["/{APP_PATH}"]',
        "--change",
        f"ENV GGAPP_BUILD={build}",
    ]
    if variant:
        argv += ["--variant", variant]
    res = engine.podman(*argv, "-", ref, input=image_tar(tree, arch), timeout=120)
    if not res.ok:
        raise InfraError(f"importing the {arch} application image failed:\n{res.evidence()}")
    for tag in tags[1:]:
        res = engine.podman("tag", ref, f"{APP_REPO}:{tag}", timeout=60)
        if not res.ok:
            raise InfraError(f"tagging {ref} as {tag} failed:\n{res.evidence()}")
    return ref
