"""The board requirements table (shared/spec/board-requirements.md) as data: one ``Row`` per check.

Keeping the table in one place means the thresholds, the generation a row applies to and the feature it
depends on are read from here by the checks, the skip logic and the report alike, and can be compared with
the spec line by line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.profiles import DeviceProfile

SEED_V1 = "seed 002 (Greengrass V1 core 1.11 device requirements)"
SEED_V2 = "seed 000 (Greengrass V2 nucleus device requirements)"
SEED_OTA = "seed 004 (OTA update of the core software: supported OS/architecture pairs)"
SEED_DOCKER = "seed 003 (Docker application deployment connector requirements)"

NOT_V1 = "not a requirement of Greengrass V1"
NOT_V2 = "not a requirement of Greengrass V2"

V1_ARCHES = ("armv6l", "armv7l", "aarch64", "x86_64")
V2_ARCHES = ("armv7l", "aarch64", "x86_64")
#: (os label, arch) pairs CreateSoftwareUpdateJob accepts (seed 004).
OTA_OS_ARCH = (
    ("ubuntu", "x86_64"),
    ("ubuntu", "aarch64"),
    ("amazon_linux", "x86_64"),
    ("raspbian", "armv7l"),
    ("raspbian", "armv6l"),
    ("openwrt", "aarch64"),
    ("openwrt", "armv7l"),
)
#: Minimum free disk (MiB) and RAM (MiB) for the core.
V1_DISK_MB, V1_DISK_OTA_MB, V2_DISK_MB = 128, 400, 256
V1_RAM_MB, V1_RAM_STREAM_MANAGER_MB, V2_RAM_MB = 128, 198, 96
DOCKER_CONNECTOR_RAM_MB = 36
#: Minimum kernel versions.
V1_KERNEL_CONTAINERS, V1_KERNEL_NO_CONTAINERS, V2_KERNEL = (4, 4), (3, 17), (2, 6, 24)
GLIBC_MIN, MUSL_MIN = (2, 14), (1, 1, 16)
JAVA_MIN = 8
DOCKER_MIN = (1, 9, 1)
#: The oldest Docker Compose any connector version was verified with (seed 003: 1.24.1 for version 1).
DOCKER_COMPOSE_MIN = (1, 24, 1)
#: Kernel options for containerized Lambdas (seed 002), plus INOTIFY_USER which the table adds.
KERNEL_OPTIONS = (
    "IPC_NS", "UTS_NS", "USER_NS", "PID_NS",
    "CGROUP_DEVICE", "CGROUPS", "MEMCG",
    "POSIX_MQUEUE", "OVERLAY_FS", "HAVE_ARCH_SECCOMP_FILTER", "SECCOMP_FILTER", "KEYS", "SECCOMP", "SHMEM",
    "INOTIFY_USER",
)
#: Commands the V1 OTA agent runs; each must be a real binary, not a BusyBox applet (seed 002).
OTA_COMMANDS = (
    "wget", "realpath", "tar", "readlink", "basename", "dirname", "pidof", "df", "grep", "umount", "mv",
    "gzip", "mkdir", "rm", "ln", "cut", "cat",
)
OTA_SHELL = "/bin/bash"
#: Commands the V2 test tooling needs on PATH. The table says "mkinfo", which is no command anywhere; it is
#: read as a typo of mkfifo (the only coreutils name it is one letter pair away from).
PRETEST_COMMANDS = ("chmod", "cp", "echo", "grep", "kill", "ln", "mkfifo", "ps", "rm", "sh", "uname")
GG_USER, GG_GROUP = "ggc_user", "ggc_group"


def _needs_containers(p: DeviceProfile) -> str | None:
    if "containers" not in p.features:
        return "the profile does not claim feature 'containers' (containerized Lambdas)"
    return None


def _needs_java(p: DeviceProfile) -> str | None:
    if "java" in p.features or "stream_manager" in p.features:
        return None
    return ("the profile claims neither feature 'java' nor 'stream_manager': the harness runs its Python "
            "reference core, which needs no JVM")


def _needs_lambda_runtimes(p: DeviceProfile) -> str | None:
    if "lambda_runtimes" not in p.features or not p.lambda_runtimes:
        return ("the profile claims no Lambda runtimes (feature 'lambda_runtimes' with a "
                "'lambda_runtimes' list)")
    return None


def _needs_ota(p: DeviceProfile) -> str | None:
    return None if "ota" in p.features else "the profile does not claim feature 'ota' (no OTA update agent)"


def _needs_docker(p: DeviceProfile) -> str | None:
    return None if "docker" in p.features else "the profile does not claim feature 'docker'"


@dataclass(frozen=True)
class Row:
    """One requirement: its text per generation (None: not a requirement there) and the feature it needs."""

    id: str
    title: str
    v1: str | None
    v2: str | None
    source_v1: str = SEED_V1
    source_v2: str = SEED_V2
    needs: Callable[[DeviceProfile], str | None] | None = None
    #: True when the row reads kernel facts, which qemu-user shows from the host.
    kernel_facts: bool = False

    def requirement(self, profile: DeviceProfile) -> str:
        text = self.v1 if profile.greengrass == "v1" else self.v2
        gen = "Greengrass V1" if profile.greengrass == "v1" else "Greengrass V2"
        return f"{gen}: {text}" if text else f"{gen}: {NOT_V1 if profile.greengrass == 'v1' else NOT_V2}"

    def source(self, profile: DeviceProfile) -> str:
        return self.source_v1 if profile.greengrass == "v1" else self.source_v2

    def skip_reason(self, profile: DeviceProfile) -> str | None:
        """Why the row does not apply to ``profile`` (None: it applies)."""
        if profile.greengrass == "v1" and self.v1 is None:
            return NOT_V1
        if profile.greengrass == "v2" and self.v2 is None:
            return NOT_V2
        return self.needs(profile) if self.needs else None


ROWS: tuple[Row, ...] = (
    Row("arch", "Supported machine architecture",
        f"`uname -m` equals the profile's arch and is one of {', '.join(V1_ARCHES)}",
        f"`uname -m` equals the profile's arch and is one of {', '.join(V2_ARCHES)} "
        "(armv6l is not supported)"),
    Row("os", "Linux, and an OS/arch pair the update service accepts",
        "Linux; with OTA the (OS, arch) pair is one of "
        + ", ".join(f"{o}/{a}" for o, a in OTA_OS_ARCH),
        "Linux"),
    Row("disk", "Free disk space for the core",
        f">= {V1_DISK_MB} MB free on the install root, >= {V1_DISK_OTA_MB} MB when OTA is used",
        f">= {V2_DISK_MB} MB free on the install root"),
    Row("ram", "Memory for the core",
        f">= {V1_RAM_MB} MB, >= {V1_RAM_STREAM_MANAGER_MB} MB with stream manager", f">= {V2_RAM_MB} MB"),
    Row("kernel", "Kernel version",
        ">= {}.{} with containerized Lambdas, >= {}.{} without".format(*V1_KERNEL_CONTAINERS,
                                                                        *V1_KERNEL_NO_CONTAINERS),
        ">= {}.{}.{} for component resource limits".format(*V2_KERNEL), kernel_facts=True),
    Row("libc", "C library",
        "glibc >= {}.{}, or musl >= {}.{}.{} on OpenWrt".format(*GLIBC_MIN, *MUSL_MIN),
        "a C library; glibc when the Java nucleus runs (features 'java'/'stream_manager')"),
    Row("var_run", "/var/run exists", "`/var/run` is a directory", None),
    Row("std_streams", "/dev/stdin, /dev/stdout, /dev/stderr exist",
        "`/dev/stdin`, `/dev/stdout` and `/dev/stderr` exist", None),
    Row("link_protection", "Hardlink and symlink protection",
        "fs.protected_hardlinks = 1 and fs.protected_symlinks = 1", None, kernel_facts=True),
    Row("kernel_config", "Kernel options for containerized Lambdas",
        "kernel options enabled: " + " ".join(f"CONFIG_{o}" for o in KERNEL_OPTIONS), None,
        needs=_needs_containers, kernel_facts=True),
    Row("cgroups", "memory and devices cgroups mounted",
        "the memory and devices cgroup (v1) hierarchies are enabled and mounted", None,
        needs=_needs_containers, kernel_facts=True),
    Row("tmp_exec", "/tmp allows exec", None, "a script in /tmp can be executed (/tmp not mounted noexec)"),
    Row("ca_trust", "Root CA of the cloud endpoints trusted",
        "the system trust store holds Amazon Root CA 1 (root of the AWS IoT and Amazon S3 endpoints)",
        "the system trust store holds Amazon Root CA 1 (root of the AWS IoT and Amazon S3 endpoints)"),
    Row("java", "Java runtime",
        f"Java {JAVA_MIN} or later (stream manager, Java Lambdas)", f"JRE {JAVA_MIN} or later (nucleus)",
        needs=_needs_java),
    Row("lambda_runtimes", "Runtimes for local Lambdas",
        "an interpreter on PATH for each claimed runtime (python3.7/python3.8/python3: python3; "
        "nodejs12.x: node; java8: java >= 8)", None, needs=_needs_lambda_runtimes),
    Row("ota_commands", "Real (non-BusyBox) commands for the OTA agent",
        " ".join(OTA_COMMANDS) + f" on PATH, none a BusyBox applet, and {OTA_SHELL}", None, needs=_needs_ota),
    Row("pretest_commands", "Basic commands the test tooling needs", None,
        " ".join(PRETEST_COMMANDS) + " on PATH"),
    Row("users", "User and group components run as",
        f"user {GG_USER} and group {GG_GROUP} exist",
        f"user {GG_USER} and group {GG_GROUP} exist, and root may run sudo as any user and group"),
    Row("docker", "Docker engine and compose",
        "Docker Engine >= {}.{}.{} and docker-compose >= {}.{}.{} in /usr/bin or /usr/local/bin, ".format(
            *DOCKER_MIN, *DOCKER_COMPOSE_MIN)
        + f"{GG_USER} in group docker, a python3 on PATH, >= {DOCKER_CONNECTOR_RAM_MB} MB RAM for the "
        "connector",
        "Docker Engine >= {}.{}.{} on PATH for the Docker application manager".format(*DOCKER_MIN),
        source_v1=SEED_DOCKER, source_v2=f"{SEED_V2}; {SEED_DOCKER}", needs=_needs_docker),
)
ROW_BY_ID: dict[str, Row] = {r.id: r for r in ROWS}
