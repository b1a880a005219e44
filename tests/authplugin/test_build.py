"""Cross-building the plugin: right ABI per architecture, no libmosquitto, cached once, clear errors."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from harness.core.authplugin import build
from harness.errors import InfraError, InputError

ARCHES = ["amd64", "arm64", "armhf", "armel"]
READELF_MACHINE = {"amd64": "X86-64", "arm64": "AArch64", "armhf": "ARM", "armel": "ARM"}


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "authplugin"


@pytest.mark.parametrize("arch", ARCHES)
def test_plugin_is_built_for_each_debian_arch_without_libmosquitto(arch: str) -> None:
    so = build.plugin_path(arch)
    assert so.name.startswith(f"{arch}-") and so.suffix == ".so"
    dyn = subprocess.run(["readelf", "-h", "-d", "--dyn-syms", "-W", str(so)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert READELF_MACHINE[arch] in dyn
    if arch in ("armhf", "armel"):
        assert ("hard-float" if arch == "armhf" else "soft-float") in dyn
    needed = [line.split("[")[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    assert needed == ["libc.so.6"], needed
    exported = {line.split()[-1] for line in dyn.splitlines()
                if " GLOBAL " in line and " UND " not in line and "FUNC" in line}
    assert exported == {"mosquitto_plugin_version", "mosquitto_plugin_init", "mosquitto_plugin_cleanup"}
    undefined = {line.split()[-1].split("@")[0] for line in dyn.splitlines() if " UND " in line}
    resolved_at_load = {"mosquitto_callback_register", "mosquitto_client_certificate",
                        "X509_get_subject_name"}
    assert resolved_at_load <= undefined


def test_build_is_cached_and_parallel_callers_share_one_build(fresh_cache: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(build.plugin_path("arm64"))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(set(results)) == 1 and len(results) == 3
    so = results[0]
    mtime = so.stat().st_mtime_ns
    assert build.plugin_path("arm64") == so and so.stat().st_mtime_ns == mtime
    leftovers = [p.name for p in fresh_cache.iterdir() if p != so and not p.name.endswith(".lock")]
    assert leftovers == []


def test_changed_source_gets_a_new_cache_entry(fresh_cache: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = build.plugin_path("amd64")
    src = tmp_path / "gg_auth.c"
    src.write_text(build.SOURCE.read_text() + "\n/* changed */\n")
    monkeypatch.setattr(build, "SOURCE", src)
    assert build.plugin_path("amd64") != first


def test_missing_compiler_names_the_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if "aarch64" in name else real_which(name, *a, **k))
    with pytest.raises(InfraError, match=r"no aarch64-linux-gnu-gcc on PATH; install the apt package "
                                         r"gcc-aarch64-linux-gnu"):
        build.plugin_path("arm64")


def test_missing_header_names_the_apt_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(build.INCLUDE_DIR / "mosquitto.h", tmp_path / "mosquitto.h")
    monkeypatch.setattr(build, "INCLUDE_DIR", tmp_path)
    with pytest.raises(InfraError, match=r"mosquitto_broker.h is missing; install the apt package "
                                         r"mosquitto-dev"):
        build.plugin_path("amd64")


def test_compile_error_shows_the_compiler_output(fresh_cache: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "gg_auth.c"
    src.write_text("int unused_and_broken(void) { return }\n")
    monkeypatch.setattr(build, "SOURCE", src)
    with pytest.raises(InfraError, match=r"cannot compile gg_auth.c for armhf: .*exited 1:\n.*error"):
        build.plugin_path("armhf")
    assert [p for p in fresh_cache.iterdir() if not p.name.endswith(".lock")] == []


def test_wrong_abi_is_caught_before_the_broker_sees_it() -> None:
    with pytest.raises(InfraError, match="armhf needs class 1, machine 40, flags including 0x400"):
        build._check_elf(build.plugin_path("armel"), "armhf")


def test_unknown_arch_lists_the_supported_ones() -> None:
    with pytest.raises(InputError, match="allowed: amd64, arm64, armhf, armel"):
        build.plugin_path("mips")


def test_apt_packages_for_harness_setup() -> None:
    pkgs = build.apt_packages()
    assert {"mosquitto-dev", "libmosquitto-dev", "gcc-aarch64-linux-gnu", "gcc-arm-linux-gnueabihf",
            "gcc-arm-linux-gnueabi"} <= set(pkgs)
