"""Device profiles: everything the harness knows about a board lives in one validated YAML file.

Code holds no board knowledge; it reads it from here. A malformed profile is an ``InputError`` naming the
file, the field and the allowed values, so users never see a traceback for a typo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.errors import InputError
from harness.paths import PROFILES_DIR

Arch = Literal["armv6l", "armv7l", "aarch64", "x86_64"]
DebianArch = Literal["armel", "armhf", "arm64", "amd64"]
Transport = Literal["qemu-user", "qemu-system", "local", "ssh"]
OsLabel = Literal["ubuntu", "raspbian", "amazon_linux", "openwrt", "debian"]
Generation = Literal["v1", "v2"]
Accel = Literal["kvm", "tcg"]
Feature = Literal["ota", "containers", "docker", "stream_manager", "lambda_runtimes", "java", "power_loss"]
LambdaRuntime = Literal["python3.7", "python3.8", "python3", "nodejs12.x", "java8"]

#: Instruction-set baseline of each Debian architecture; used to explain "Illegal instruction" deaths.
DEBIAN_ARCH_BASELINE: dict[str, str] = {
    "armel": "ARMv5TE (soft-float)",
    "armhf": "ARMv7-A with VFPv3-D16 and Thumb-2",
    "arm64": "ARMv8-A",
    "amd64": "x86-64",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Userland(_Strict):
    """The Debian root file system the target runs (built with mmdebstrap and cached)."""

    suite: str = Field("bookworm", description="Debian suite, e.g. bookworm")
    architecture: DebianArch = Field(description="Debian architecture of the userland")
    packages: list[str] = Field(default_factory=list, description="extra Debian packages to install")
    mirror: str = Field("http://deb.debian.org/debian", description="Debian mirror URL")
    variant: Literal["minbase", "essential", "apt", "required", "important", "standard"] = "minbase"
    #: Post-build edits that make a deliberately broken userland (seeded defects), as argv lists run
    #: inside the finished root file system with /bin/sh.
    customize: list[str] = Field(default_factory=list, description="shell lines run in the new root")
    #: Configuration that must exist before packages install (mmdebstrap --setup-hook, the new root as
    #: "$1"): e.g. the initramfs module list of a qemu-system board, so the kernel package's postinst
    #: builds a small initrd once instead of a MODULES=most one that takes half an hour under emulation.
    setup: list[str] = Field(default_factory=list, description="shell lines run before packages install")

    @field_validator("packages")
    @classmethod
    def _package_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or any(c.isspace() for c in name) or name.startswith("-"):
                raise ValueError(f"package name {name!r} is not a Debian package name")
        return value


class Emulation(_Strict):
    """How qemu-user emulates the CPU (ignored when the userland is the host's architecture)."""

    cpu: str | None = Field(
        None, description="QEMU CPU model (QEMU_CPU), e.g. arm1176, cortex-a7, cortex-a53"
    )


class Resources(_Strict):
    """Limits the target enforces, as a board would have them."""

    memory_mb: int | None = Field(
        None, ge=16, le=1 << 20, description="memory limit for everything on the target"
    )
    disk_mb: int | None = Field(None, ge=64, le=1 << 22, description="size of the target's writable disk")
    tmp_noexec: bool = Field(False, description="mount /tmp noexec (a board with a hardened /tmp)")


class SshConfig(_Strict):
    """How to reach a real board."""

    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str = "root"
    key_file: str | None = None
    known_hosts: str | None = Field(None, description="known_hosts file; None trusts on first use")
    options: list[str] = Field(
        default_factory=list, description="extra ssh -o options, e.g. ConnectTimeout=5"
    )
    connect_timeout_s: float = Field(10.0, gt=0)


class PowerConfig(_Strict):
    """Power control for a real board: external commands (argv lists), as labgrid's ExternalPowerDriver."""

    driver: Literal["command", "none"] = "none"
    cmd_on: list[str] = Field(default_factory=list, description="argv that switches the board on")
    cmd_off: list[str] = Field(default_factory=list, description="argv for a clean stop (after shutdown)")
    cmd_cut: list[str] = Field(default_factory=list, description="argv that cuts power at once")
    boot_timeout_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _commands(self) -> PowerConfig:
        if self.driver == "command" and not (self.cmd_on and self.cmd_cut):
            raise ValueError("driver 'command' needs 'cmd_on' and 'cmd_cut' argv lists")
        return self


class SystemVm(_Strict):
    """A whole emulated machine (transport ``qemu-system``): QEMU binary, machine, CPU and boot files.

    Board knowledge lives here, not in code: which QEMU machine and CPU the board is, where its kernel,
    initrd and device tree lie inside the root file system, which console it talks on and what the kernel
    command line says.
    """

    qemu: str = Field(description="QEMU system emulator, e.g. qemu-system-aarch64")
    machine: str = Field(description="QEMU machine (-machine), e.g. virt, raspi0, q35")
    cpu: str | None = Field(None, description="QEMU CPU model (-cpu), e.g. cortex-a53; None: the default")
    accel: list[Accel] = Field(
        default_factory=lambda: list[Accel](["tcg"]),
        description="accelerators to try in order; kvm is used only when /dev/kvm opens and the guest "
        "architecture is the host's",
    )
    smp: int = Field(1, ge=1, le=64, description="virtual CPUs")
    kernel: str = Field(description="kernel image inside the root file system (glob), e.g. boot/vmlinuz-*")
    initrd: str | None = Field(None, description="initrd inside the root file system (glob)")
    dtb: str | None = Field(None, description="device tree inside the root file system (glob)")
    append: list[str] = Field(
        default_factory=list, description="kernel command line words, e.g. root=/dev/vda console=ttyAMA0"
    )
    disk_interface: Literal["virtio", "sd", "ide", "none"] = Field(
        "virtio", description="how the raw root disk is attached (-drive if=...)"
    )
    net_device: str = Field(
        "virtio-net-pci", description="QEMU NIC model for user-mode networking, e.g. virtio-net-device"
    )
    extra_args: list[str] = Field(default_factory=list, description="further QEMU arguments (argv words)")
    boot_timeout_s: float = Field(600.0, gt=0, description="seconds from power on to an SSH answer")
    shutdown_timeout_s: float = Field(120.0, gt=0, description="seconds a clean shutdown may take")


class DeviceProfile(_Strict):
    """One device under test."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = ""
    arch: Arch = Field(description="machine as `uname -m` must report it")
    transport: Transport
    userland: Userland | None = None
    emulation: Emulation = Emulation()
    os: OsLabel = Field("debian", description="OS label used for update-job validation")
    greengrass: Generation = "v2"
    features: list[Feature] = Field(default_factory=list)
    lambda_runtimes: list[LambdaRuntime] = Field(default_factory=list)
    resources: Resources = Resources()
    kernel_config: str | None = Field(None, description="kernel config file to check instead of the live one")
    ssh: SshConfig | None = None
    system: SystemVm | None = Field(None, description="the emulated machine (transport qemu-system)")
    power: PowerConfig = PowerConfig()
    #: Where the core is installed on the target.
    install_root: str = "/greengrass"
    _source: str = PrivateAttr("")

    @model_validator(mode="after")
    def _transport_needs(self) -> DeviceProfile:
        if self.transport == "qemu-user" and self.userland is None:
            raise ValueError(
                "transport 'qemu-user' needs a 'userland' section (suite, architecture, packages)"
            )
        if self.transport == "qemu-system" and (self.userland is None or self.system is None):
            raise ValueError(
                "transport 'qemu-system' needs a 'userland' section (its root disk, with the kernel package) "
                "and a 'system' section (qemu, machine, cpu, kernel, append)"
            )
        if self.transport == "ssh" and self.ssh is None:
            raise ValueError("transport 'ssh' needs an 'ssh' section (host, port, user, key_file)")
        if self.lambda_runtimes and "lambda_runtimes" not in self.features:
            raise ValueError("'lambda_runtimes' lists runtimes but 'features' does not claim lambda_runtimes")
        return self

    @property
    def source(self) -> str:
        """The file the profile came from."""
        return self._source or self.name


def profile_schema() -> dict[str, Any]:
    """JSON schema of a profile, for editors (``harness profiles --schema``)."""
    return DeviceProfile.model_json_schema()


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid device profile"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            allowed = _allowed_fields(parent)
            msg = f"unknown field; allowed fields here: {', '.join(allowed)}"
        elif e["type"] == "missing":
            msg = "required field is missing"
        got = "" if e["type"] in ("missing",) else f" (got {e.get('input')!r})"
        lines.append(f"  field '{loc}': {msg}{got}")
    return "\n".join(lines)


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    model: Any = DeviceProfile
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)


def load_profile_file(path: Path) -> DeviceProfile:
    """Read and validate one profile file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read device profile: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: a device profile must be a YAML mapping of fields, got {type(data).__name__}"
        )
    try:
        profile = DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise InputError(_format_errors(path, exc)) from None
    if profile.name != path.stem:
        raise InputError(f"{path}: field 'name': {profile.name!r} must equal the file name {path.stem!r}")
    profile._source = str(path)
    return profile


def profile_dirs() -> list[Path]:
    """Where profiles are looked up: HARNESS_PROFILE_PATH (os.pathsep-separated), then the shipped ones."""
    import os

    extra = [Path(p) for p in os.environ.get("HARNESS_PROFILE_PATH", "").split(os.pathsep) if p]
    return [*extra, PROFILES_DIR]


def find_profile(name_or_path: str) -> DeviceProfile:
    """A profile by name (searched in profile_dirs) or by path to a YAML file."""
    as_path = Path(name_or_path)
    if as_path.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return load_profile_file(as_path)
    for d in profile_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = d / f"{name_or_path}{suffix}"
            if candidate.exists():
                return load_profile_file(candidate)
    known = ", ".join(p.stem for p in list_profile_files())
    raise InputError(f"no device profile named {name_or_path!r}; known profiles: {known}")


def list_profile_files() -> list[Path]:
    seen: dict[str, Path] = {}
    for d in profile_dirs():
        for p in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            seen.setdefault(p.stem, p)
    return list(seen.values())


def dump_schema() -> str:
    return json.dumps(profile_schema(), indent=2)
