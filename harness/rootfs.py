"""Debian root file systems for targets, built with mmdebstrap and cached by content.

The cache key is a hash of everything that decides the content (suite, architecture, variant, mirror,
packages, customize hooks), so two profiles asking for the same userland share one tree and a changed
package list gets a new one. A tree is built under a temporary name and renamed into place only when
complete, under a file lock, so parallel runs never collide and a half-built entry is never used.
Customized trees (seeded defects) are derived from the uncustomized base by copying it, which takes
seconds instead of minutes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness.errors import InfraError
from harness.paths import cache_dir
from harness.profiles import Userland

MARKER = ".harness-rootfs.json"
FORMAT = 1
BUILD_TIMEOUT_S = 45 * 60
LOCK_TIMEOUT_S = 60 * 60


@dataclass(frozen=True)
class RootfsSpec:
    """What decides a root file system's content."""

    suite: str
    architecture: str
    variant: str = "minbase"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = ()
    customize: tuple[str, ...] = field(default=())
    setup: tuple[str, ...] = field(default=())

    @classmethod
    def from_userland(cls, u: Userland) -> RootfsSpec:
        return cls(
            suite=u.suite,
            architecture=u.architecture,
            variant=u.variant,
            mirror=u.mirror,
            packages=tuple(sorted(set(u.packages))),
            customize=tuple(u.customize),
            setup=tuple(u.setup),
        )

    @property
    def key(self) -> str:
        fields = asdict(self)
        if not fields["setup"]:
            del fields["setup"]  # keys of trees without setup hooks stay what they were
        doc = json.dumps({"format": FORMAT, **fields}, sort_keys=True)
        return f"{self.suite}-{self.architecture}-{hashlib.sha256(doc.encode()).hexdigest()[:16]}"

    @property
    def base(self) -> RootfsSpec:
        return replace(self, customize=())


def rootfs_root() -> Path:
    d = cache_dir() / "rootfs"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _locked(path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive lock on ``path`` with a deadline (a concurrent build of the same key waits for it)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InfraError(f"timed out after {timeout:.0f} s waiting for the lock {path}") from None
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)


def is_complete(tree: Path) -> bool:
    return (tree / MARKER).is_file()


def cached(spec: RootfsSpec) -> Path | None:
    """The cached tree for ``spec`` if it is complete."""
    tree = rootfs_root() / spec.key
    return tree if is_complete(tree) else None


def ensure_rootfs(spec: RootfsSpec, log: Path | None = None) -> Path:
    """Return the complete tree for ``spec``, building it (and its base) if needed."""
    root = rootfs_root()
    tree = root / spec.key
    if is_complete(tree):
        return tree
    base_tree = ensure_rootfs(spec.base, log) if spec.customize else None
    with _locked(root / f"{spec.key}.lock"):
        if is_complete(tree):
            return tree
        if tree.exists():  # half-built (interrupted before the marker was written): rebuild
            shutil.rmtree(tree)
        for stale in root.glob(f"{spec.key}.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f"{spec.key}.tmp{os.getpid()}"
        log = log or root / f"{spec.key}.log"
        started = time.time()
        try:
            if base_tree is not None:
                _derive(base_tree, tmp, spec, log)
            else:
                _mmdebstrap(spec, tmp, log)
            (tmp / MARKER).write_text(
                json.dumps(
                    {"key": spec.key, "spec": asdict(spec), "built_s": round(time.time() - started, 1)}
                )
            )
            os.rename(tmp, tree)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return tree


def _run_logged(argv: list[str], log: Path, what: str) -> None:
    with log.open("ab") as fh:
        fh.write(f"$ {' '.join(argv)}\n".encode())
        fh.flush()
        try:
            res = subprocess.run(
                argv, stdout=fh, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise InfraError(f"{what} timed out after {BUILD_TIMEOUT_S} s; log: {log}") from None
        except FileNotFoundError:
            raise InfraError(f"{what}: {argv[0]} is not installed; run `harness setup` as root") from None
    if res.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise InfraError(f"{what} failed (exit {res.returncode}); log: {log}\n" + "\n".join(tail))


def _mmdebstrap(spec: RootfsSpec, dest: Path, log: Path) -> None:
    if os.geteuid() != 0:
        raise InfraError("building a root file system needs root (mmdebstrap --mode=root); run as root")
    argv = [
        "mmdebstrap",
        "--mode=root",
        f"--variant={spec.variant}",
        f"--architectures={spec.architecture}",
        '--aptopt=Acquire::Retries "3"',
    ]
    if spec.packages:
        argv.append("--include=" + ",".join(spec.packages))
    argv += [f"--setup-hook={hook}" for hook in spec.setup]
    argv += [spec.suite, str(dest), spec.mirror]
    _run_logged(argv, log, f"mmdebstrap {spec.suite}/{spec.architecture}")


def _derive(base: Path, dest: Path, spec: RootfsSpec, log: Path) -> None:
    _run_logged(
        ["cp", "-a", "--reflink=auto", str(base), str(dest)], log, "copying the base root file system"
    )
    (dest / MARKER).unlink(missing_ok=True)
    for hook in spec.customize:
        _run_logged(["sh", "-ec", hook, "customize", str(dest)], log, f"customize hook {hook!r}")


def remove(spec: RootfsSpec) -> None:
    """Drop a cached tree (used by the cold-cache benchmark)."""
    root = rootfs_root()
    with _locked(root / f"{spec.key}.lock"):
        shutil.rmtree(root / spec.key, ignore_errors=True)
