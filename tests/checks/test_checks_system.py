"""arch, os, kernel and libc against scripted boards: pass and fail paths, V1 and V2 thresholds."""

from __future__ import annotations

import pytest
from fakeboard import Board, make_profile

from harness.checks import run_check
from harness.profiles import DeviceProfile
from harness.targets.fake import reply

# -- arch -------------------------------------------------------------------------------------------


def test_arch_passes_when_uname_matches(board: Board, v2: DeviceProfile) -> None:
    res = run_check("arch", board.target(), v2)
    assert res.status == "passed" and "'x86_64'" in res.message
    assert "armv7l, aarch64, x86_64" in res.requirement


def test_arch_mismatch_fails(board: Board) -> None:
    board.machine = "aarch64"
    res = run_check("arch", board.target(), make_profile("v2", arch="x86_64"))
    assert res.status == "failed"
    assert "'aarch64'" in res.message and "'x86_64'" in res.message


def test_armv6l_is_v1_only(board: Board) -> None:
    board.machine = "armv6l"
    assert run_check("arch", board.target(), make_profile("v1", arch="armv6l")).status == "passed"
    res = run_check("arch", board.target(), make_profile("v2", arch="armv6l"))
    assert res.status == "failed" and "not an architecture Greengrass V2 supports" in res.message
    assert "armv6l is not supported" in res.requirement


def test_sigill_is_diagnosed_as_wrong_userland(board: Board) -> None:
    board.extra.append(lambda argv: reply(stderr="qemu: uncaught target signal 4 (Illegal instruction)",
                                          exit_status=132) if argv == ["uname", "-m"] else None)
    profile = make_profile("v1", arch="armv6l", transport="qemu-user", emulation={"cpu": "arm1176"},
                           userland={"architecture": "armhf"})
    res = run_check("arch", board.target(), profile)
    assert res.status == "failed"
    assert "SIGILL" in res.message and "ARMv7 userland on an ARMv6 CPU" in res.message
    assert "armhf" in res.message and "arm1176" in res.message and "armel" in res.message


# -- os ---------------------------------------------------------------------------------------------


def test_os_v2_needs_only_linux(board: Board) -> None:
    res = run_check("os", board.target(), make_profile("v2", os="debian"))
    assert res.status == "passed" and "Debian GNU/Linux 12" in res.message
    assert res.source.startswith("seed 000") and "read /etc/os-release" in res.evidence


def test_os_not_linux_fails(board: Board, v2: DeviceProfile) -> None:
    board.kernel_name = "FreeBSD"
    assert run_check("os", board.target(), v2).status == "failed"


@pytest.mark.parametrize(("os_label", "arch", "ok"), [
    ("ubuntu", "x86_64", True), ("raspbian", "armv6l", True), ("openwrt", "armv7l", True),
    ("debian", "x86_64", False), ("raspbian", "aarch64", False), ("amazon_linux", "aarch64", False),
])
def test_os_v1_ota_needs_an_accepted_pair(board: Board, os_label: str, arch: str, ok: bool) -> None:
    board.machine = arch
    res = run_check("os", board.target(), make_profile("v1", os=os_label, arch=arch, features=["ota"]))
    assert res.status == ("passed" if ok else "failed"), res.message
    assert f"{os_label}/{arch}" in res.message
    assert "seed 004" in res.source and "ubuntu/x86_64" in res.requirement


def test_os_v1_without_ota_accepts_any_linux(board: Board) -> None:
    res = run_check("os", board.target(), make_profile("v1", os="debian"))
    assert res.status == "passed" and "seed 004" not in res.source


# -- kernel -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("greengrass", "features", "release", "ok"), [
    ("v1", ["containers"], "4.4.0-rpi", True),
    ("v1", ["containers"], "4.3.9", False),
    ("v1", [], "3.17.0", True),
    ("v1", [], "3.16.7-ckt", False),
    ("v2", [], "2.6.24", True),
    ("v2", [], "2.6.23.1", False),
    ("v2", [], "6.1.0-18-amd64", True),
])
def test_kernel_thresholds(board: Board, greengrass: str, features: list[str], release: str,
                           ok: bool) -> None:
    board.kernel = release
    res = run_check("kernel", board.target(), make_profile(greengrass, features=features))
    assert res.status == ("passed" if ok else "failed"), res.message
    assert release in res.message and not res.informative


def test_kernel_is_informative_under_qemu_user(board: Board, v2: DeviceProfile) -> None:
    board.kernel_is_host = True
    res = run_check("kernel", board.target(), v2)
    assert res.informative and "host kernel seen through qemu-user" in res.evidence


def test_kernel_unreadable_is_error(board: Board, v2: DeviceProfile) -> None:
    board.kernel = "weird"
    assert run_check("kernel", board.target(), v2).status == "error"


# -- libc -------------------------------------------------------------------------------------------


def test_glibc_passes_v1(board: Board, v1: DeviceProfile) -> None:
    res = run_check("libc", board.target(), v1)
    assert res.status == "passed" and "glibc 2.36" in res.message and ">= 2.14" in res.requirement


def test_old_glibc_fails_v1(board: Board, v1: DeviceProfile) -> None:
    board.ldd = reply("ldd (GNU libc) 2.13\n")
    res = run_check("libc", board.target(), v1)
    assert res.status == "failed" and "2.13" in res.message


def test_without_ldd_getconf_answers(board: Board, v1: DeviceProfile) -> None:
    board.ldd = reply(stderr="/usr/bin/ldd: /bin/bash: bad interpreter", exit_status=126)
    res = run_check("libc", board.target(), v1)
    assert res.status == "passed" and "glibc 2.36" in res.message
    assert "getconf GNU_LIBC_VERSION" in res.evidence


MUSL = "musl libc (armhf)\nVersion 1.2.4\nDynamic Program Loader\n"


@pytest.mark.parametrize(("os_label", "text", "ok"), [
    ("openwrt", MUSL, True),
    ("openwrt", MUSL.replace("1.2.4", "1.1.15"), False),
    ("raspbian", MUSL, False),
])
def test_musl_only_on_openwrt_v1(board: Board, os_label: str, text: str, ok: bool) -> None:
    board.ldd = reply(stderr=text, exit_status=1)
    board.getconf = None
    res = run_check("libc", board.target(), make_profile("v1", os=os_label))
    assert res.status == ("passed" if ok else "failed"), res.message
    assert "musl" in res.message


def test_musl_loader_is_found_without_ldd(board: Board) -> None:
    board.ldd = None
    board.getconf = None
    board.musl_loader = "/lib/ld-musl-armhf.so.1\n" + MUSL
    res = run_check("libc", board.target(), make_profile("v1", os="openwrt"))
    assert res.status == "passed" and "musl 1.2.4" in res.message


def test_no_libc_identified_fails(board: Board, v1: DeviceProfile) -> None:
    board.ldd = None
    board.getconf = None
    assert run_check("libc", board.target(), v1).status == "failed"


def test_v2_needs_glibc_only_for_the_java_nucleus(board: Board) -> None:
    board.ldd = reply(stderr=MUSL, exit_status=1)
    board.getconf = None
    assert run_check("libc", board.target(), make_profile("v2")).status == "passed"
    res = run_check("libc", board.target(), make_profile("v2", features=["java"]))
    assert res.status == "failed" and "needs glibc" in res.message
