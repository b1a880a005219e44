"""The qemu-system transport: whole emulated boards with their own kernel, RAM and raw root disk.

The first tests need no VM (profile validation, the QEMU command line). The others boot real VMs once per
profile (TCG on ARM; x86_64 with KVM when a probe shows it works, else TCG): ``uname -m``, the board suite
with authoritative kernel rows, the seeded kernel-config defect, and a power cut during a write-heavy
workload followed by fsck of the raw disk and a second boot. Each test asserts no QEMU process or VM
directory is left behind.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.checks import CheckResult, run_checks
from harness.errors import InputError
from harness.paths import FIXTURES_DIR, state_dir
from harness.profiles import DeviceProfile, find_profile, load_profile_file
from harness.targets.qemu_system import FAULT_MODEL, QemuSystemTarget, gc_stale_vms, kvm_usable, vm_root
from harness.targets.qemu_system_cut import cut_during_writes
from harness.targets.qemu_system_image import VmImage, ensure_image
from harness.targets.qemu_system_leaks import find_leaks

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="building root disks needs root")
SHIPPED = ("qemu-system-x86_64", "qemu-system-aarch64", "qemu-system-armv7l", "qemu-system-armv6l")
KERNEL_ROWS = ("kernel", "link_protection", "kernel_config", "cgroups")


def _fake_image(tmp_path: Path) -> VmImage:
    return VmImage(directory=tmp_path, kernel=tmp_path / "kernel", initrd=tmp_path / "initrd", dtb=None,
                   disk=tmp_path / "root.raw", ssh_key=tmp_path / "id", host_key_line="ssh-ed25519 AAAA",
                   disk_mb=2048)


# -- no VM -------------------------------------------------------------------------------------------
def test_profile_without_system_section_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "no-system.yaml"
    bad.write_text("name: no-system\narch: aarch64\ntransport: qemu-system\n"
                   "userland: {architecture: arm64}\n")
    with pytest.raises(InputError) as exc:
        load_profile_file(bad)
    assert "no-system.yaml" in str(exc.value)
    assert "'system' section" in str(exc.value)


def test_unknown_system_field_names_the_allowed_fields(tmp_path: Path) -> None:
    src = Path(find_profile("qemu-system-aarch64").source).read_text()
    bad = tmp_path / "typo.yaml"
    bad.write_text(src.replace("name: qemu-system-aarch64", "name: typo").replace("  smp: 2", "  smpp: 2"))
    with pytest.raises(InputError) as exc:
        load_profile_file(bad)
    text = str(exc.value)
    assert "system.smpp" in text and "machine" in text and "boot_timeout_s" in text


def test_bad_accelerator_names_the_allowed_values(tmp_path: Path) -> None:
    src = Path(find_profile("qemu-system-aarch64").source).read_text()
    bad = tmp_path / "accel.yaml"
    bad.write_text(src.replace("name: qemu-system-aarch64", "name: accel").replace("[tcg]", "[hvf]"))
    with pytest.raises(InputError) as exc:
        load_profile_file(bad)
    assert "system.accel" in str(exc.value) and "'kvm'" in str(exc.value) and "'tcg'" in str(exc.value)


@pytest.mark.parametrize("name", SHIPPED)
def test_qemu_command_line_comes_from_the_profile(name: str, tmp_path: Path) -> None:
    profile = find_profile(name)
    assert profile.system is not None and profile.resources.memory_mb is not None
    target = QemuSystemTarget(profile)
    try:
        target._image = _fake_image(tmp_path)
        argv = target.qemu_argv(2222)
    finally:
        target.close()
    assert argv[0] == profile.system.qemu
    assert argv[argv.index("-m") + 1] == f"{profile.resources.memory_mb}M"  # the board's RAM is the VM's
    assert argv[argv.index("-machine") + 1] == profile.system.machine
    assert argv[argv.index("-append") + 1] == " ".join(profile.system.append)
    netdev = argv[argv.index("-netdev") + 1]
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev  # SSH reachable from loopback only
    assert "format=raw" in argv[argv.index("-drive") + 1]
    if profile.arch != os.uname().machine:
        assert "kvm" not in argv  # no KVM for a foreign architecture


def test_raspi0_board_is_all_profile_knowledge(tmp_path: Path) -> None:
    """The ARMv6 board differs from the virt boards only by profile fields: SD card, USB NIC, dtb, 1 CPU."""
    profile = find_profile("qemu-system-armv6l")
    assert profile.system is not None
    target = QemuSystemTarget(profile)
    try:
        target._image = replace(_fake_image(tmp_path), dtb=tmp_path / "dtb")
        argv = target.qemu_argv(2222)
    finally:
        target.close()
    assert argv[argv.index("-machine") + 1] == "raspi0"
    assert argv[argv.index("-m") + 1] == "512M"  # raspi0 accepts only the Pi Zero's 512 MB
    assert argv[argv.index("-smp") + 1] == "1"
    assert argv[argv.index("-dtb") + 1] == str(tmp_path / "dtb")
    assert "if=sd" in argv[argv.index("-drive") + 1]
    assert argv[argv.index("-device") + 1] == "usb-net,netdev=net0"
    assert "kvm" not in argv


def test_sd_card_size_must_be_a_power_of_two(tmp_path: Path) -> None:
    """QEMU refuses other SD sizes; the harness says so (file, field, allowed values) before building."""
    src = Path(find_profile("qemu-system-armv6l").source).read_text()
    bad = tmp_path / "sd-size.yaml"
    bad.write_text(src.replace("name: qemu-system-armv6l", "name: sd-size").replace("disk_mb: 2048",
                                                                                   "disk_mb: 2000"))
    profile = load_profile_file(bad)
    with pytest.raises(InputError) as exc:
        ensure_image(profile)
    text = str(exc.value)
    assert "sd-size.yaml" in text and "resources.disk_mb" in text and "power of two" in text
    assert "1024 or 2048" in text


def test_foreign_guest_never_uses_kvm() -> None:
    assert not kvm_usable(find_profile("qemu-system-aarch64"))


# -- real VMs ----------------------------------------------------------------------------------------
@pytest.fixture
def vm_factory() -> Iterator[list[QemuSystemTarget]]:
    made: list[QemuSystemTarget] = []
    yield made
    for t in made:
        t.close()
    leaks = [line for line in find_leaks(state_dir()) if any(t.workdir.name in line for t in made)]
    assert not leaks, f"left behind: {leaks}"


def _boot(made: list[QemuSystemTarget], profile: DeviceProfile) -> QemuSystemTarget:
    target = QemuSystemTarget(profile)
    made.append(target)
    target.power_on()
    return target


def _by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.id: r for r in results}


@needs_root
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xdist_group(f"vm-{n}")) for n in SHIPPED],
)
def test_shipped_profile_boots_and_passes_the_board_suite(
    name: str, vm_factory: list[QemuSystemTarget]
) -> None:
    """One boot per profile: uname, every board row (kernel rows authoritative), RAM, then a clean off.

    On x86_64 (the fastest to boot) the same VM then takes a power cut during writes, an fsck and a second
    boot: the cut scenario must pass on a sound board.
    """
    profile = find_profile(name)
    target = _boot(vm_factory, profile)
    assert target.run(["uname", "-m"], timeout=60).stdout.strip() == profile.arch
    assert target.kernel_is_host is False
    results = _by_id(run_checks(target, profile))
    bad = {i: r.message for i, r in results.items() if r.status in ("failed", "error")}
    assert not bad, f"board rows failed on {name}: {bad}"
    for row in KERNEL_ROWS:
        assert results[row].status == "passed" and not results[row].informative, results[row]
    assert "/boot/config-" in results["kernel_config"].message  # the guest's own kernel config
    mem = target.facts()
    assert profile.resources.memory_mb is not None
    # MemTotal is the VM's RAM minus what the guest kernel reserves: authoritative and near the profile's.
    assert 0.8 * profile.resources.memory_mb * 1024 < mem.mem_total_kb <= profile.resources.memory_mb * 1024
    if profile.arch == "x86_64":
        outcome = cut_during_writes(target, profile)
        assert outcome.passed, outcome.message + "\n" + "\n".join(outcome.evidence)
        assert outcome.fsck is not None and outcome.fsck.fault_model == FAULT_MODEL
        assert "Pass 5" in outcome.fsck.repair_output
        assert outcome.properties["fault_model"] == FAULT_MODEL
        assert (target.workdir / "fsck.jsonl").is_file()
        assert target.run(["uname", "-m"], timeout=60).stdout.strip() == "x86_64"
    target.power_off()
    assert not target.is_on and target._qemu is None


@needs_root
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.xdist_group("vm-defect-qemu-system")
def test_seeded_defects_fail_their_rows_for_real(vm_factory: list[QemuSystemTarget]) -> None:
    """A kernel config without required options fails kernel_config; an install root in RAM fails the cut."""
    profile = load_profile_file(FIXTURES_DIR / "profiles" / "defect-qemu-system.yaml")
    target = _boot(vm_factory, profile)
    results = _by_id(run_checks(target, profile, ["kernel_config", "kernel", "arch", "cgroups"]))
    row = results["kernel_config"]
    assert row.status == "failed" and not row.informative, row
    assert "CONFIG_USER_NS" in row.message and "CONFIG_OVERLAY_FS" in row.message
    assert "/boot/config-" in row.message
    assert all(results[i].status == "passed" for i in ("kernel", "arch", "cgroups"))
    outcome = cut_during_writes(target, profile)
    assert not outcome.passed
    assert "/greengrass/harness-cut-marker" in outcome.message and "is gone" in outcome.message
    assert outcome.fsck is not None  # the disk itself was still checked and recorded


def test_fsck_records_a_clean_raw_disk(tmp_path: Path) -> None:
    profile = find_profile("qemu-system-x86_64")
    target = QemuSystemTarget(profile)
    try:
        with target.disk.open("wb") as fh:
            fh.truncate(64 * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(target.disk)], check=True, timeout=60)
        result = target.fsck()
        assert result.check_exit == 0 and result.repair_exit == 0 and result.clean
        assert "Pass 5" in result.check_output and result.fault_model == FAULT_MODEL
        assert "clean" in result.summary()
        assert (target.workdir / "fsck.jsonl").read_text().count("\n") == 1
    finally:
        target.close()


def test_vm_of_a_dead_harness_is_reaped_and_reported(tmp_path: Path) -> None:
    """A QEMU whose harness died is found by the leak probe and killed by the next harness."""
    root = vm_root()
    wd = root / "orphan-vm"
    wd.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (wd / "owner.pid").write_text(str(dead.pid))
    qemu = subprocess.Popen(["qemu-system-x86_64", "-machine", "none", "-display", "none", "-monitor", "none",
                             "-serial", "none", "-name", "orphan", "-pidfile", str(wd / "qemu.pid")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (wd / "qemu.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        leaks = find_leaks(state_dir())
        assert any(f"qemu-system process {qemu.pid}" in line for line in leaks), leaks
        assert any("orphan-vm" in line for line in leaks)
        assert str(wd) in gc_stale_vms()
        assert qemu.wait(timeout=30) == -9
        assert not wd.exists()
        assert not [line for line in find_leaks(state_dir()) if "orphan" in line or str(qemu.pid) in line]
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait(timeout=30)
