"""Build the gg_auth mosquitto plugin for a Debian architecture, once, and cache the shared object.

The broker runs inside the target, so on an emulated board it is ARM code and needs an ARM plugin: the
host cross-compiles with Debian's cross toolchains. The plugin links no libmosquitto (broker symbols
resolve when mosquitto loads it), so only the broker headers (mosquitto-dev, libmosquitto-dev) are needed.
Builds are cached by content (source, headers, flags, compiler version), written under a temporary name
and renamed into place under a file lock, so parallel test workers never see half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InfraError, InputError
from harness.paths import cache_dir

SOURCE = Path(__file__).with_name("gg_auth.c")
#: Where the broker headers are installed; headers are architecture independent, so one copy serves all.
INCLUDE_DIR = Path("/usr/include")
#: Header -> the Debian package that ships it.
HEADERS: dict[str, str] = {
    "mosquitto.h": "libmosquitto-dev",
    "mosquitto_broker.h": "mosquitto-dev",
    "mosquitto_plugin.h": "mosquitto-dev",
}
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden")
#: Debian architecture -> GNU triplet of its cross toolchain.
TRIPLETS: dict[str, str] = {
    "amd64": "x86_64-linux-gnu",
    "arm64": "aarch64-linux-gnu",
    "armhf": "arm-linux-gnueabihf",
    "armel": "arm-linux-gnueabi",
}
HOST_DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}.get(platform.machine(), "")
BUILD_TIMEOUT_S = 120.0
LOCK_TIMEOUT_S = 300.0

# ELF identification each architecture's plugin must carry: (class 1=32/2=64 bit, e_machine, e_flags mask).
_EM_X86_64, _EM_ARM, _EM_AARCH64 = 62, 40, 183
_EF_ARM_ABI_FLOAT_SOFT, _EF_ARM_ABI_FLOAT_HARD = 0x200, 0x400
_ELF_ID: dict[str, tuple[int, int, int]] = {
    "amd64": (2, _EM_X86_64, 0),
    "arm64": (2, _EM_AARCH64, 0),
    "armhf": (1, _EM_ARM, _EF_ARM_ABI_FLOAT_HARD),
    "armel": (1, _EM_ARM, _EF_ARM_ABI_FLOAT_SOFT),
}


@dataclass(frozen=True)
class Toolchain:
    """The C compiler for one Debian architecture and the apt package that provides it."""

    arch: str
    compiler: str
    package: str


def compiler_package(debian_arch: str) -> str:
    """The apt package with the compiler for ``debian_arch`` on this host (``gcc`` for the host's own)."""
    _check_arch(debian_arch)
    if debian_arch == HOST_DEBIAN_ARCH:
        return "gcc"
    return "gcc-" + TRIPLETS[debian_arch].replace("_", "-")


def apt_packages(arches: tuple[str, ...] = tuple(TRIPLETS)) -> list[str]:
    """What ``harness setup`` must install to build the plugin for ``arches``."""
    return sorted({compiler_package(a) for a in arches} | set(HEADERS.values()))


def toolchain(debian_arch: str) -> Toolchain:
    """The compiler for ``debian_arch``; ``InfraError`` naming the apt package when it is missing."""
    _check_arch(debian_arch)
    package = compiler_package(debian_arch)
    candidates = [f"{TRIPLETS[debian_arch]}-gcc"]
    if debian_arch == HOST_DEBIAN_ARCH:
        candidates.append("gcc")
    for name in candidates:
        found = shutil.which(name)
        if found:
            return Toolchain(debian_arch, found, package)
    raise InfraError(f"cannot build the gg_auth plugin for {debian_arch}: no {candidates[0]} on PATH; "
                     f"install the apt package {package} "
                     f"(`apt-get install -y {package}`, or `harness setup`)")


def plugin_path(debian_arch: str) -> Path:
    """The gg_auth plugin (.so) for ``debian_arch``, built on first use and cached under
    ``cache_dir()/authplugin/<arch>-<sha>.so``."""
    tc = toolchain(debian_arch)
    headers = _headers()
    key = _build_key(tc, headers)
    out_dir = cache_dir() / "authplugin"
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{debian_arch}-{key}.so"
    if final.exists():
        return final
    with _locked(out_dir / f"{final.name}.lock"):
        if final.exists():  # another process built it while we waited
            return final
        _compile(tc, headers, final)
    return final


def _check_arch(debian_arch: str) -> None:
    if debian_arch not in TRIPLETS:
        raise InputError(f"cannot build the gg_auth plugin for architecture {debian_arch!r}; "
                         f"allowed: {', '.join(TRIPLETS)}")


def _headers() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name, package in HEADERS.items():
        path = INCLUDE_DIR / name
        if not path.is_file():
            raise InfraError(f"cannot build the gg_auth plugin: {path} is missing; install the apt package "
                             f"{package} (`apt-get install -y {package}`, or `harness setup`)")
        found[name] = path
    return found


def _build_key(tc: Toolchain, headers: dict[str, Path]) -> str:
    version = _run([tc.compiler, "-dumpfullversion"], "ask the compiler its version").strip()
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), *(headers[n].read_bytes() for n in sorted(headers)),
                 " ".join(CFLAGS).encode(), f"{Path(tc.compiler).name} {version}".encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _compile(tc: Toolchain, headers: dict[str, Path], final: Path) -> None:
    """Compile into a temporary file beside ``final``, check it is code for the right ABI, rename it in."""
    with tempfile.TemporaryDirectory(prefix="gg-auth-build-") as tmp:
        # Only the broker headers go on the include path: adding /usr/include itself would put the host's
        # libc headers ahead of the cross toolchain's.
        inc = Path(tmp) / "include"
        inc.mkdir()
        for name, path in headers.items():
            shutil.copyfile(path, inc / name)
        fd, partial = tempfile.mkstemp(prefix=f".{final.name}.", dir=final.parent)
        os.close(fd)
        try:
            _run([tc.compiler, *CFLAGS, f"-I{inc}", "-o", partial, str(SOURCE)],
                 f"compile {SOURCE.name} for {tc.arch}")
            _check_elf(Path(partial), tc.arch)
            os.chmod(partial, 0o644)
            os.replace(partial, final)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


def _check_elf(path: Path, debian_arch: str) -> None:
    """A misconfigured compiler (wrong float ABI, host gcc for ARM) fails here rather than in the broker."""
    head = path.read_bytes()[:64]
    if len(head) < 52 or head[:4] != b"\x7fELF":
        raise InfraError(f"{path}: the compiler did not produce an ELF file")
    elf_class, machine = head[4], struct.unpack_from("<H", head, 18)[0]
    flags = struct.unpack_from("<I", head, 36 if elf_class == 1 else 48)[0]
    want_class, want_machine, want_flags = _ELF_ID[debian_arch]
    if (elf_class, machine) != (want_class, want_machine) or (flags & want_flags) != want_flags:
        raise InfraError(f"{path}: built for ELF class {elf_class}, machine {machine}, flags {flags:#x}; "
                         f"{debian_arch} needs class {want_class}, machine {want_machine}, "
                         f"flags including {want_flags:#x}")


def _run(argv: list[str], what: str) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InfraError(f"cannot {what}: {argv[0]} did not finish within {BUILD_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise InfraError(f"cannot {what}: {argv[0]}: {exc.strerror}") from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip()[-2000:]
        raise InfraError(f"cannot {what}: `{' '.join(argv)}` exited {res.returncode}:\n{tail}")
    return res.stdout


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as fh:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InfraError(f"{lock_path}: another process held the build lock for "
                                     f"{LOCK_TIMEOUT_S:g} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
