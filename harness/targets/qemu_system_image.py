"""Boot files and the root disk of a full-system VM, made from the profile's cached root file system.

A qemu-system board boots its own kernel from its own disk. Both come from the profile's Debian tree (the
kernel package is part of the userland): the kernel, initrd and device tree named by the profile's
``system`` section are copied out, and the tree becomes a raw ext4 image with ``mkfs.ext4 -d`` (no loop
mount, no root-only mount namespace needed). Raw, because after a power cut the harness fscks the very
bytes the guest left behind.

The result is cached next to the root file systems, keyed by the tree and the disk size, and holds a
harness-generated SSH key (0600) whose public half is the image's ``/root/.ssh/authorized_keys``: the
harness is the only one who can log in. Each target boots a sparse copy of the cached ("golden") image,
so a cut on one target never damages another's disk or the cache.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InfraError, InputError
from harness.paths import cache_dir
from harness.profiles import DeviceProfile, SystemVm
from harness.rootfs import RootfsSpec, _locked, ensure_rootfs
from harness.targets.safepath import resolve_in_root

FORMAT = 1
MARKER = "image.json"
MKFS_TIMEOUT_S = 15 * 60
#: Free space kept on top of the tree when the profile names no disk size.
DEFAULT_HEADROOM_MB = 512


@dataclass(frozen=True)
class VmImage:
    """Everything QEMU needs to boot one profile, all on the host."""

    directory: Path
    kernel: Path
    initrd: Path | None
    dtb: Path | None
    disk: Path
    ssh_key: Path
    host_key_line: str
    disk_mb: int

    def copy_disk(self, dest: Path) -> None:
        """A private, sparse copy of the golden disk for one target."""
        res = subprocess.run(
            ["cp", "--sparse=always", "--reflink=auto", str(self.disk), str(dest)],
            capture_output=True, text=True, timeout=MKFS_TIMEOUT_S, check=False,
        )
        if res.returncode != 0:
            raise InfraError(f"copying the root disk {self.disk} to {dest} failed: {res.stderr.strip()}")


def images_root() -> Path:
    d = cache_dir() / "vm-images"
    d.mkdir(parents=True, exist_ok=True)
    return d


def image_key(profile: DeviceProfile) -> str:
    """Cache key: the tree's key, the boot file globs and the disk size decide the image's content."""
    assert profile.userland is not None and profile.system is not None
    spec = RootfsSpec.from_userland(profile.userland)
    s = profile.system
    doc = json.dumps(
        {"format": FORMAT, "rootfs": spec.key, "disk_mb": profile.resources.disk_mb,
         "kernel": s.kernel, "initrd": s.initrd, "dtb": s.dtb},
        sort_keys=True,
    )
    return f"{spec.key}-{hashlib.sha256(doc.encode()).hexdigest()[:12]}"


def ensure_image(profile: DeviceProfile) -> VmImage:
    """The cached image for ``profile``, built (under a lock, atomically) on first use."""
    if profile.userland is None or profile.system is None:
        raise InputError(f"{profile.source}: transport 'qemu-system' needs 'userland' and 'system' sections")
    _check_sd_size(profile)
    root = images_root()
    key = image_key(profile)
    final = root / key
    if not (final / MARKER).is_file():
        tree = ensure_rootfs(RootfsSpec.from_userland(profile.userland))
        with _locked(root / f"{key}.lock"):
            if not (final / MARKER).is_file():
                _build(profile, tree, root, final)
    return _load(final)


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _check_sd_size(profile: DeviceProfile) -> None:
    """QEMU's SD card model accepts only power-of-two sizes: say so before building anything.

    Without this the image would be built and QEMU would then refuse to start with a message that names
    neither the profile nor its field.
    """
    assert profile.system is not None
    mb = profile.resources.disk_mb
    if profile.system.disk_interface == "sd" and mb is not None and mb != _next_power_of_two(mb):
        raise InputError(
            f"{profile.source}: field 'resources.disk_mb': {mb} is not a power of two, which QEMU's SD card "
            f"(system.disk_interface 'sd') requires; allowed values: 256, 512, 1024, 2048, 4096, ... "
            f"(nearest: {_next_power_of_two(mb) // 2} or {_next_power_of_two(mb)})"
        )


def _load(d: Path) -> VmImage:
    meta = json.loads((d / MARKER).read_text())
    return VmImage(
        directory=d,
        kernel=d / meta["kernel"],
        initrd=d / meta["initrd"] if meta["initrd"] else None,
        dtb=d / meta["dtb"] if meta["dtb"] else None,
        disk=d / "root.raw",
        ssh_key=d / "id_ed25519",
        host_key_line=meta["host_key"],
        disk_mb=meta["disk_mb"],
    )


def _find_boot_file(profile: DeviceProfile, tree: Path, field: str, pattern: str) -> Path:
    """The newest file matching the profile's glob inside the tree (symlinks resolved inside it)."""
    matches = sorted(glob.glob(pattern, root_dir=tree))
    if not matches:
        boot = sorted(p.name for p in (tree / "boot").iterdir()) if (tree / "boot").is_dir() else []
        raise InputError(
            f"{profile.source}: field 'system.{field}': {pattern!r} matches nothing in the root file system "
            f"{tree}; /boot holds: {', '.join(boot) or 'nothing'} (does 'userland.packages' name the "
            "kernel package, e.g. linux-image-arm64?)"
        )
    path = resolve_in_root(tree, matches[-1])
    if not path.is_file():
        raise InputError(f"{profile.source}: field 'system.{field}': {matches[-1]} is not a file in {tree}")
    return path


def _tree_mb(tree: Path) -> int:
    res = subprocess.run(["du", "-sxm", str(tree)], capture_output=True, text=True, timeout=600, check=False)
    try:
        return int(res.stdout.split()[0])
    except (IndexError, ValueError):
        raise InfraError(f"cannot measure {tree}: {res.stderr.strip()}") from None


def _run(argv: list[str], what: str, timeout: float = MKFS_TIMEOUT_S) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise InfraError(f"{what} did not finish within {timeout:g} s") from None
    except FileNotFoundError:
        raise InfraError(f"{what}: {argv[0]} is not installed (package e2fsprogs/openssh-client)") from None
    if res.returncode != 0:
        raise InfraError(f"{what} failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()}")
    return res.stdout


def _build(profile: DeviceProfile, tree: Path, root: Path, final: Path) -> None:
    system: SystemVm = profile.system  # type: ignore[assignment]
    started = time.monotonic()
    shutil.rmtree(final, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp", dir=root))
    try:
        names: dict[str, str | None] = {"kernel": None, "initrd": None, "dtb": None}
        for field, pattern in (("kernel", system.kernel), ("initrd", system.initrd), ("dtb", system.dtb)):
            if pattern:
                src = _find_boot_file(profile, tree, field, pattern)
                names[field] = field
                shutil.copyfile(src, tmp / field)
        host_pub = resolve_in_root(tree, "/etc/ssh/ssh_host_ed25519_key.pub")
        if not host_pub.is_file():
            raise InputError(
                f"{profile.source}: field 'userland.packages': the root file system has no SSH host key "
                "(/etc/ssh/ssh_host_ed25519_key.pub); a qemu-system profile needs openssh-server"
            )
        key = tmp / "id_ed25519"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"gg-harness@{profile.name}",
              "-f", str(key)], "ssh-keygen", timeout=60)
        os.chmod(key, 0o600)
        disk_mb = profile.resources.disk_mb or _tree_mb(tree) + DEFAULT_HEADROOM_MB
        if system.disk_interface == "sd":
            disk_mb = _next_power_of_two(disk_mb)
        disk = tmp / "root.raw"
        with disk.open("wb") as fh:
            fh.truncate(disk_mb * 1024 * 1024)
        _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(tree), str(disk)],
             f"mkfs.ext4 -d {tree} (a {disk_mb} MB root disk for {profile.name})")
        _authorize(disk, tmp / "id_ed25519.pub", tmp)
        (tmp / MARKER).write_text(json.dumps({
            "key": final.name, "profile": profile.name, "tree": str(tree), "disk_mb": disk_mb,
            **names, "host_key": host_pub.read_text().strip(),
            "built_s": round(time.monotonic() - started, 1),
        }))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _authorize(disk: Path, pub: Path, workdir: Path) -> None:
    """Write the harness's public key as root's authorized_keys into the image, without mounting it."""
    script = workdir / "debugfs.cmds"
    script.write_text(
        "mkdir /root/.ssh\n"
        f"write {pub} /root/.ssh/authorized_keys\n"
        "set_inode_field /root/.ssh mode 040700\n"
        "set_inode_field /root/.ssh/authorized_keys mode 0100600\n"
        "set_inode_field /root/.ssh/authorized_keys uid 0\n"
        "set_inode_field /root/.ssh/authorized_keys gid 0\n"
    )
    _run(["debugfs", "-w", "-f", str(script), str(disk)], "debugfs (writing authorized_keys)", timeout=120)
    script.unlink()
    check = _run(["debugfs", "-R", "cat /root/.ssh/authorized_keys", str(disk)], "debugfs (checking)", 60)
    if pub.read_text().strip() not in check:
        raise InfraError(f"the harness key did not land in {disk}:/root/.ssh/authorized_keys")
