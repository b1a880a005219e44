"""A scripted healthy Debian board for the board checks' unit tests.

``Board`` answers the commands the checks run (uname, df, ldd, the command-resolution script, ...) from a
few fields a test changes to seed one defect, so each test states only what differs from a good device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.checks.catalog import KERNEL_OPTIONS, OTA_COMMANDS, PRETEST_COMMANDS
from harness.checks.commands import RESOLVE
from harness.checks.filesystem import _EXISTS, EXEC_MARK, TMP_EXEC
from harness.checks.system import _MUSL_LOADER
from harness.profiles import DeviceProfile
from harness.targets.base import Facts, RunResult
from harness.targets.fake import FakeTarget, reply

AMAZON_ROOT_CA_1 = """-----BEGIN CERTIFICATE-----
MIIDQTCCAimgAwIBAgITBmyfz5m/jAo54vB4ikPmljZbyjANBgkqhkiG9w0BAQsF
ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6
b24gUm9vdCBDQSAxMB4XDTE1MDUyNjAwMDAwMFoXDTM4MDExNzAwMDAwMFowOTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJv
b3QgQ0EgMTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBALJ4gHHKeNXj
ca9HgFB0fW7Y14h29Jlo91ghYPl0hAEvrAIthtOgQ3pOsqTQNroBvo3bSMgHFzZM
9O6II8c+6zf1tRn4SWiw3te5djgdYZ6k/oI2peVKVuRF4fn9tBb6dNqcmzU5L/qw
IFAGbHrQgLKm+a/sRxmPUDgH3KKHOVj4utWp+UhnMJbulHheb4mjUcAwhmahRWa6
VOujw5H5SNz/0egwLX0tdHA114gk957EWW67c4cX8jJGKLhD+rcdqsq08p8kDi1L
93FcXmn/6pUCyziKrlA4b9v7LWIbxcceVOF34GfID5yHI9Y/QCB/IIDEgEw+OyQm
jgSubJrIqg0CAwEAAaNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMC
AYYwHQYDVR0OBBYEFIQYzIU07LwMlJQuCFmcx7IQTgoIMA0GCSqGSIb3DQEBCwUA
A4IBAQCY8jdaQZChGsV2USggNiMOruYou6r4lK5IpDB/G/wkjUu0yKGX9rbxenDI
U5PMCCjjmCXPI6T53iHTfIUJrU6adTrCC2qJeHZERxhlbI1Bjjt/msv0tadQ1wUs
N+gDS63pYaACbvXy8MWy7Vu33PqUXHeeE6V/Uq2V8viTO96LXFvKWlJbYK8U90vv
o/ufQJVtMVT8QtPHRh8jrdkPSHCa2XV4cdFyQzR1bldZwgJcJmApzyMZFo6IQ6XU
5MsI+yMRQ+hDKXJioaldXgjUkK642M4UwtBV8ob2xJNDd2ZhwLnoQdeXeGADbkpy
rqXRfboQnoZsG4q5WTP468SQvvG5
-----END CERTIFICATE-----
"""
#: A syntactically valid PEM block that is not Amazon Root CA 1.
OTHER_CA = "-----BEGIN CERTIFICATE-----\nTm90IGEgcmVhbCBjZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----\n"

FULL_KERNEL_CONFIG = "\n".join(f"CONFIG_{o}=y" for o in KERNEL_OPTIONS) + "\n"

PROC_CGROUPS = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
memory\t4\t39\t1
devices\t5\t1\t1
"""
MOUNTS = """/dev/root / ext4 rw,relatime 0 0
proc /proc proc rw,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev,mode=755 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0
"""
SUDO_OK = """User root may run the following commands on board:
    (ALL : ALL) ALL
"""
GLIBC_LDD = "ldd (Debian GLIBC 2.36-9+deb12u4) 2.36\nCopyright (C) 2022 Free Software Foundation, Inc.\n"


def default_commands() -> dict[str, str]:
    names = {*OTA_COMMANDS, *PRETEST_COMMANDS, "python3", "sudo"}
    out = {n: f"/usr/bin/{n}" for n in names}
    out["/bin/bash"] = "/bin/bash"
    out["sh"] = "/usr/bin/sh"
    return out


def default_files() -> dict[str, str]:
    return {
        "/etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
        "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"
                       "ggc_user:x:999:999::/home/ggc_user:/usr/sbin/nologin\n",
        "/etc/group": "root:x:0:\nggc_group:x:999:\n",
        "/etc/ssl/certs/ca-certificates.crt": OTHER_CA + AMAZON_ROOT_CA_1,
        "/proc/cgroups": PROC_CGROUPS,
        "/proc/mounts": MOUNTS,
        "/proc/sys/fs/protected_hardlinks": "1\n",
        "/proc/sys/fs/protected_symlinks": "1\n",
    }


@dataclass
class Board:
    """What the fake device looks like; ``target()`` builds a FakeTarget answering from these fields."""

    machine: str = "x86_64"
    kernel: str = "6.1.0-18-amd64"
    kernel_name: str = "Linux"
    kernel_is_host: bool = False
    mem_total_kb: int = 2 * 1024 * 1024
    memory_limit_kb: int | None = None
    #: path -> (available kB, mount point) for `df -Pk path`; other paths do not exist.
    df: dict[str, tuple[int, str]] = field(default_factory=lambda: {"/": (1_900_000, "/")})
    ldd: RunResult | None = field(default_factory=lambda: reply(GLIBC_LDD))
    getconf: str | None = "glibc 2.36"
    musl_loader: str | None = None
    dirs: set[str] = field(default_factory=lambda: {"/var/run", "/tmp"})
    devices: set[str] = field(default_factory=lambda: {"/dev/stdin", "/dev/stdout", "/dev/stderr"})
    tmp_exec: bool = True
    proc_config: str | None = FULL_KERNEL_CONFIG
    #: command name (or absolute path) -> path on PATH; absent means not found.
    commands: dict[str, str] = field(default_factory=default_commands)
    #: path -> what `readlink -f` gives (symlinks); absent means the path itself.
    links: dict[str, str] = field(default_factory=dict)
    #: path of the busybox binary, and paths that are hard links of it.
    busybox: str | None = None
    busybox_hardlinks: set[str] = field(default_factory=set)
    #: path -> output of `path --version`.
    versions: dict[str, str] = field(default_factory=lambda: {"/usr/bin/python3": "Python 3.11.2"})
    java: str | None = None
    sudo: RunResult = field(default_factory=lambda: reply(SUDO_OK))
    #: name -> path, for executables in /usr/bin or /usr/local/bin (docker, docker-compose).
    docker_dirs: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=default_files)
    extra: list[Callable[[list[str]], RunResult | BaseException | None]] = field(default_factory=list)

    def target(self) -> FakeTarget:
        facts = Facts(self.machine, self.kernel, "glibc 2.36", self.mem_total_kb, self.memory_limit_kb,
                      self.kernel_is_host)
        return FakeTarget("board", handlers=[*self.extra, self.handle], files=self.files, facts=facts,
                          kernel_is_host=self.kernel_is_host)

    def resolved(self, path: str) -> str:
        return self.links.get(path, path)

    def handle(self, argv: list[str]) -> RunResult | None:
        a = tuple(argv)
        if a[:1] == ("uname",):
            return reply({"-m": self.machine, "-r": self.kernel, "-s": self.kernel_name}[a[1]] + "\n")
        if a[:2] == ("df", "-Pk"):
            if a[2] not in self.df:
                return reply(stderr=f"df: {a[2]}: No such file or directory", exit_status=1)
            avail, mnt = self.df[a[2]]
            return reply("Filesystem 1024-blocks Used Available Capacity Mounted on\n"
                         f"/dev/root {avail * 2} {avail} {avail} 50% {mnt}\n")
        if a == ("ldd", "--version"):
            return self.ldd or reply(stderr="sh: ldd: not found", exit_status=127)
        if a == ("getconf", "GNU_LIBC_VERSION"):
            return reply(f"{self.getconf}\n") if self.getconf else reply(exit_status=1)
        if a[:1] == ("ls",):
            return reply(" ".join(a[2:]) + "\n")
        if a[:2] == ("test", "-d"):
            return reply(exit_status=0 if a[2] in self.dirs else 1)
        if a[:1] == ("sh",) and len(a) >= 3:
            return self._shell(a[2], list(a[4:]))
        if a == ("zcat", "/proc/config.gz"):
            if self.proc_config is None:
                return reply(stderr="gzip: /proc/config.gz: No such file or directory", exit_status=1)
            return reply(self.proc_config)
        if a[:1] == ("sudo",):
            return self.sudo if "sudo" in self.commands else reply(exit_status=127)
        if len(a) == 2 and a[1] == "-version" and a[0] in ("java", self.commands.get("java")):
            if self.java is None or "java" not in self.commands:
                return reply(stderr=f"nsenter: failed to execute {a[0]}: No such file", exit_status=127)
            return reply(stderr=self.java)
        if len(a) == 2 and a[1] == "--version" and a[0] in self.versions:
            return reply(self.versions[a[0]] + "\n")
        return None

    def _shell(self, script: str, args: list[str]) -> RunResult | None:
        if script == RESOLVE:
            lines = []
            for name in args:
                path = self.commands.get(name, "")
                res = self.resolved(path) if path else ""
                is_bb = bool(self.busybox) and (res == self.busybox or res in self.busybox_hardlinks)
                same = "yes" if path and is_bb else "no"
                lines.append(f"{name}\t{path}\t{res}\t{same}")
            return reply("\n".join(lines) + "\n")
        if script == 'command -v "$1"':
            found = self.commands.get(args[0])
            return reply(found + "\n") if found else reply(exit_status=127)
        if script == _EXISTS:
            return reply("".join(f"{p} {'present' if p in self.devices else 'MISSING'}\n" for p in args))
        if script == TMP_EXEC:
            if self.tmp_exec:
                return reply(EXEC_MARK + "\n")
            return reply(stderr="sh: 1: /tmp/gg-harness-exec-check.42: Permission denied", exit_status=126)
        if script == _MUSL_LOADER:
            return reply(self.musl_loader or "")
        if script.startswith("for d in /usr/bin /usr/local/bin"):
            return reply((self.docker_dirs[args[0]] + "\n") if args[0] in self.docker_dirs else "")
        return None


def make_profile(greengrass: str = "v2", **fields: Any) -> DeviceProfile:
    """A validated local-transport profile (no userland needed) with ``fields`` overriding the defaults."""
    data: dict[str, Any] = {"name": "unit-board", "arch": "x86_64", "transport": "local", "os": "ubuntu",
                            "greengrass": greengrass}
    data.update(fields)
    return DeviceProfile.model_validate(data)
