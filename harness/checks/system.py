"""Checks of what the device is: machine architecture, operating system, kernel version, C library."""

from __future__ import annotations

import re

from harness.checks.catalog import (
    GLIBC_MIN,
    MUSL_MIN,
    OTA_OS_ARCH,
    SEED_OTA,
    SEED_V1,
    V1_ARCHES,
    V1_KERNEL_CONTAINERS,
    V1_KERNEL_NO_CONTAINERS,
    V2_ARCHES,
    V2_KERNEL,
)
from harness.checks.common import (
    CMD_TIMEOUT,
    SIGILL_STATUS,
    at_least,
    error,
    fmt_version,
    generation,
    parse_version,
    sh,
    verdict,
)
from harness.checks.registry import board_check
from harness.checks.result import CheckResult
from harness.profiles import DEBIAN_ARCH_BASELINE, DeviceProfile
from harness.targets.base import Target


@board_check("arch")
def arch(target: Target, profile: DeviceProfile) -> CheckResult:
    """`uname -m` must be the profile's arch and one the generation supports.

    A userland built for a newer CPU than the emulated one dies with SIGILL on its first instruction; that is
    reported as a diagnosis (which userland, which CPU), not as a crash of the run.
    """
    supported = V1_ARCHES if profile.greengrass == "v1" else V2_ARCHES
    gen = generation(profile)
    not_v6 = " (armv6l is not supported)" if profile.greengrass == "v2" else ""
    requirement = (f"{gen}: `uname -m` equals the profile's arch ({profile.arch}) and is one of "
                   f"{', '.join(supported)}{not_v6}")
    res = target.run(["uname", "-m"], timeout=CMD_TIMEOUT)
    if res.exit_status == SIGILL_STATUS or "illegal instruction" in res.stderr.lower():
        u = profile.userland
        userland = u.architecture if u else "device"
        baseline = DEBIAN_ARCH_BASELINE.get(userland, userland) if u else "another CPU"
        cpu = profile.emulation.cpu or "default"
        return verdict(False, f"`uname -m` died with SIGILL (exit {res.exit_status}): the {userland} "
                       f"userland needs {baseline} but the CPU ({cpu}, {profile.arch}) lacks it, as an ARMv7 "
                       f"userland on an ARMv6 CPU does; pair arch {profile.arch} with a userland built for "
                       "it (armv6l: Debian armel).", requirement)
    if not res.ok:
        return error(f"Error: `uname -m` failed with exit status {res.exit_status}, so the machine is "
                     "unknown.", requirement)
    machine = res.stdout.strip()
    problems = []
    if machine != profile.arch:
        problems.append(f"The device reports machine {machine!r} but the profile declares {profile.arch!r}")
    if machine not in supported:
        problems.append(f"Machine {machine!r} is not an architecture {gen} supports ({', '.join(supported)})")
    elif profile.arch not in supported:
        problems.append(f"The declared {profile.arch!r} is not an architecture {gen} supports")
    if problems:
        return verdict(False, "; ".join(problems) + ".", requirement)
    return verdict(True, f"The device reports machine {machine!r}, as declared, which {gen} supports.",
                   requirement)


def _os_release_name(text: str | None) -> str:
    if not text:
        return "no /etc/os-release"
    fields = dict(
        (k, v.strip().strip('"')) for k, _, v in (line.partition("=") for line in text.splitlines()) if v
    )
    return fields.get("PRETTY_NAME") or fields.get("NAME") or fields.get("ID") or "unnamed distribution"


@board_check("os")
def os_check(target: Target, profile: DeviceProfile) -> CheckResult:
    """Linux everywhere; a V1 core updated over the air needs an (OS label, arch) pair the update job accepts.

    The OS label is the profile's ``os`` (what an update job is created with); /etc/os-release is read for
    the evidence, since a label that does not match the userland is worth seeing but is not itself a failure.
    """
    res = target.run(["uname", "-s"], timeout=CMD_TIMEOUT)
    kernel_name = res.stdout.strip() if res.ok else f"unknown (uname -s exit {res.exit_status})"
    distro = _os_release_name(target.read_text("/etc/os-release"))
    ota = profile.greengrass == "v1" and "ota" in profile.features
    pairs = ", ".join(f"{o}/{a}" for o, a in OTA_OS_ARCH)
    if ota:
        requirement = f"Greengrass V1 with OTA: Linux, and the OS/arch pair is one of {pairs}"
        source = f"{SEED_V1}; {SEED_OTA}"
    else:
        requirement = f"{generation(profile)}: Linux"
        source = ""
    if kernel_name != "Linux":
        return verdict(False, f"The device's kernel is {kernel_name!r}, not Linux ({distro}).", requirement,
                       source=source)
    if ota:
        pair = (profile.os, profile.arch)
        if pair not in OTA_OS_ARCH:
            return verdict(False, f"The profile's OS/arch pair {profile.os}/{profile.arch} is not one the "
                           f"update service accepts ({len(OTA_OS_ARCH)} pairs, see requirement); the device "
                           f"runs Linux ({distro}).", requirement, source=source)
        return verdict(True, f"The device runs Linux ({distro}) and the profile's OS/arch pair "
                       f"{profile.os}/{profile.arch} is one the update service accepts.", requirement,
                       source=source)
    return verdict(True, f"The device runs Linux ({distro}); the profile's OS label is {profile.os!r}.",
                   requirement, source=source)


@board_check("kernel")
def kernel(target: Target, profile: DeviceProfile) -> CheckResult:
    """Kernel version from `uname -r` against the generation's minimum (containerized V1 needs more)."""
    minimum: tuple[int, ...]
    if profile.greengrass == "v1":
        containers = "containers" in profile.features
        minimum = V1_KERNEL_CONTAINERS if containers else V1_KERNEL_NO_CONTAINERS
        why = "with containerized Lambdas" if containers else "without containers"
        requirement = f"Greengrass V1 {why}: kernel >= {fmt_version(minimum)}"
    else:
        minimum = V2_KERNEL
        requirement = f"Greengrass V2: kernel >= {fmt_version(minimum)} (component resource limits)"
    informative = target.kernel_is_host
    res = target.run(["uname", "-r"], timeout=CMD_TIMEOUT)
    version = parse_version(res.stdout) if res.ok else None
    if version is None:
        return error(f"Error: cannot read the kernel version (`uname -r` exit {res.exit_status}, output "
                     f"{res.stdout.strip()!r}).", requirement, informative=informative)
    release = res.stdout.strip()
    ok = at_least(version, minimum)
    word = "meets" if ok else "is older than"
    return verdict(ok, f"Kernel {release} ({fmt_version(version)}) {word} the minimum "
                   f"{fmt_version(minimum)}.", requirement, informative=informative)


_GLIBC = re.compile(r"(?:GLIBC|GNU libc|glibc)\D*?(\d+\.\d+(?:\.\d+)?)", re.IGNORECASE)
_MUSL = re.compile(r"musl libc.*?Version\s+(\d+\.\d+(?:\.\d+)?)", re.IGNORECASE | re.DOTALL)
_MUSL_LOADER = 'for f in /lib/ld-musl-*.so.1; do [ -e "$f" ] && { echo "$f"; "$f" 2>&1; }; done; exit 0'


def _detect_libc(target: Target) -> tuple[str, tuple[int, ...]] | None:
    """(name, version) of the C library, from `ldd --version`, `getconf`, or the musl loader."""
    res = target.run(["ldd", "--version"], timeout=CMD_TIMEOUT)
    text = res.stdout + "\n" + res.stderr
    musl = _MUSL.search(text)
    if musl:
        return "musl", parse_version(musl.group(1)) or (0,)
    first = text.strip().splitlines()[0] if text.strip() else ""
    glibc = _GLIBC.search(first) if res.ok else None
    if glibc:
        # "ldd (Debian GLIBC 2.36-9+deb12u14) 2.36": the upstream version is the last word.
        version = parse_version(first.split()[-1]) or parse_version(glibc.group(1))
        if version:
            return "glibc", version
    res = target.run(["getconf", "GNU_LIBC_VERSION"], timeout=CMD_TIMEOUT)
    if res.ok and res.stdout.strip().startswith("glibc"):
        version = parse_version(res.stdout)
        if version:
            return "glibc", version
    res = target.run(sh(_MUSL_LOADER), timeout=CMD_TIMEOUT)
    musl = _MUSL.search(res.stdout)
    if musl:
        return "musl", parse_version(musl.group(1)) or (0,)
    return None


@board_check("libc")
def libc(target: Target, profile: DeviceProfile) -> CheckResult:
    """The C library and its version: V1 needs glibc >= 2.14 (musl >= 1.1.16 only on OpenWrt).

    `ldd` is a bash script on Debian, so on a device without bash `getconf GNU_LIBC_VERSION` is asked next.
    """
    found = _detect_libc(target)
    if profile.greengrass == "v1":
        requirement = (f"Greengrass V1: glibc >= {fmt_version(GLIBC_MIN)}, or musl >= "
                       f"{fmt_version(MUSL_MIN)} on OpenWrt")
        if found is None:
            return verdict(False, "No C library could be identified (neither `ldd --version`, `getconf "
                           "GNU_LIBC_VERSION` nor a musl loader answered).", requirement)
        name, version = found
        if name == "glibc":
            ok = at_least(version, GLIBC_MIN)
            return verdict(ok, f"The device has glibc {fmt_version(version)}, "
                           f"{'at least' if ok else 'older than'} {fmt_version(GLIBC_MIN)}.", requirement)
        if profile.os != "openwrt":
            return verdict(False, f"The device has musl {fmt_version(version)} but its OS label is "
                           f"{profile.os!r}: Greengrass V1 accepts musl only on OpenWrt.", requirement)
        ok = at_least(version, MUSL_MIN)
        return verdict(ok, f"The OpenWrt device has musl {fmt_version(version)}, "
                       f"{'at least' if ok else 'older than'} {fmt_version(MUSL_MIN)}.", requirement)
    java = "java" in profile.features or "stream_manager" in profile.features
    if java:
        requirement = ("Greengrass V2: glibc, which the Java nucleus needs (feature 'java' or "
                       "'stream_manager' claimed)")
    else:
        requirement = ("Greengrass V2: a C library (glibc is needed only by the Java nucleus, which the "
                       "profile does not claim)")
    if found is None:
        return verdict(False, "No C library could be identified (neither `ldd --version`, `getconf "
                       "GNU_LIBC_VERSION` nor a musl loader answered).", requirement)
    name, version = found
    if java and name != "glibc":
        return verdict(False, f"The device has {name} {fmt_version(version)}, but the Java runtime of the "
                       "nucleus needs glibc.", requirement)
    return verdict(True, f"The device has {name} {fmt_version(version)}.", requirement)
