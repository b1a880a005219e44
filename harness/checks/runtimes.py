"""Checks of runtimes the core or its Lambdas run on: Java, Lambda interpreters, Docker."""

from __future__ import annotations

import re

from harness.checks.catalog import (
    DOCKER_COMPOSE_MIN,
    DOCKER_CONNECTOR_RAM_MB,
    DOCKER_MIN,
    GG_USER,
    JAVA_MIN,
    V1_RAM_MB,
    V1_RAM_STREAM_MANAGER_MB,
)
from harness.checks.common import (
    CMD_TIMEOUT,
    at_least,
    fmt_version,
    missing_command,
    parse_version,
    sh,
    verdict,
)
from harness.checks.registry import board_check
from harness.checks.result import CheckResult
from harness.profiles import DeviceProfile
from harness.targets.base import Target

_JAVA_VERSION = re.compile(r'version "([^"]+)"')
#: Interpreter names tried for each Lambda runtime, most specific first; any python3 serves the Python
#: runtimes because the harness's reference core runs Python Lambdas on whatever python3 the device has.
RUNTIME_BINARIES: dict[str, tuple[str, ...]] = {
    "python3.7": ("python3.7", "python3"),
    "python3.8": ("python3.8", "python3"),
    "python3": ("python3",),
    "nodejs12.x": ("node", "nodejs"),
    "java8": ("java",),
}
DOCKER_DIRS = ("/usr/bin", "/usr/local/bin")


def which(target: Target, name: str) -> str | None:
    """Path of ``name`` on the device's PATH (`command -v`), or None."""
    res = target.run(sh('command -v "$1"', name), timeout=CMD_TIMEOUT)
    path = res.stdout.strip()
    return path if res.ok and path.startswith("/") else None


def java_major(target: Target, java: str = "java") -> tuple[int | None, str]:
    """(major version, first line of `java -version`); None when java is missing or unreadable."""
    res = target.run([java, "-version"], timeout=CMD_TIMEOUT)
    if missing_command(res):
        return None, "java not found on PATH"
    text = res.stderr + res.stdout
    m = _JAVA_VERSION.search(text)
    line = text.strip().splitlines()[0] if text.strip() else f"exit {res.exit_status}"
    if not res.ok or m is None:
        return None, line
    parts = [int(p) for p in re.findall(r"\d+", m.group(1))[:2]] or [0]
    major = parts[1] if parts[0] == 1 and len(parts) > 1 else parts[0]  # "1.8.0_292" is Java 8
    return major, line


@board_check("java")
def java(target: Target, profile: DeviceProfile) -> CheckResult:
    """A Java runtime of version 8 or later, for stream manager and Java Lambdas (V1) or the nucleus (V2)."""
    major, line = java_major(target)
    if major is None:
        return verdict(False, f"No usable Java runtime: {line}; Java {JAVA_MIN} or later is required.")
    ok = major >= JAVA_MIN
    return verdict(ok, f"Java {major} found ({line}); {'at least' if ok else 'older than'} Java {JAVA_MIN}.")


def _runtime(target: Target, runtime: str) -> tuple[bool, str]:
    """Whether ``runtime`` has an interpreter on the device, and what was found."""
    for name in RUNTIME_BINARIES[runtime]:
        path = which(target, name)
        if path is None:
            continue
        if runtime == "java8":
            major, line = java_major(target, path)
            if major is None or major < JAVA_MIN:
                return False, f"{runtime}: {path} is not Java {JAVA_MIN} or later ({line})"
            return True, f"{runtime}: {path} (Java {major})"
        res = target.run([path, "--version"], timeout=CMD_TIMEOUT)
        out = (res.stdout or res.stderr).strip()
        version = out.splitlines()[0] if out else "no version printed"
        if not res.ok:
            return False, f"{runtime}: {path} does not run (`{path} --version` exit {res.exit_status})"
        return True, f"{runtime}: {path} ({version})"
    return False, f"{runtime}: none of {', '.join(RUNTIME_BINARIES[runtime])} on PATH"


@board_check("lambda_runtimes")
def lambda_runtimes(target: Target, profile: DeviceProfile) -> CheckResult:
    """An interpreter for each Lambda runtime the profile claims, and only those."""
    results = [_runtime(target, r) for r in profile.lambda_runtimes]
    bad = [text for ok, text in results if not ok]
    good = [text for ok, text in results if ok]
    wanted = ", ".join(f"{r}: {' or '.join(RUNTIME_BINARIES[r])}" for r in profile.lambda_runtimes)
    requirement = f"Greengrass V1: an interpreter on PATH for each claimed runtime ({wanted})"
    n = len(results)
    if bad:
        return verdict(False, f"Claimed Lambda runtimes without an interpreter ({len(bad)} of {n}): "
                       f"{'; '.join(bad)}.", requirement)
    return verdict(True, f"Every claimed Lambda runtime has an interpreter ({n} of {n}): {'; '.join(good)}.",
                   requirement)


def _in_dirs(target: Target, name: str) -> str | None:
    script = 'for d in /usr/bin /usr/local/bin; do [ -x "$d/$1" ] && { echo "$d/$1"; break; }; done; exit 0'
    res = target.run(sh(script, name), timeout=CMD_TIMEOUT)
    return res.stdout.strip() or None


def _docker_engine(target: Target, docker: str) -> tuple[bool, str]:
    res = target.run([docker, "--version"], timeout=CMD_TIMEOUT)
    version = parse_version(res.stdout.split("version", 1)[-1]) if res.ok else None
    if version is None:
        return False, f"`{docker} --version` gave no version (exit {res.exit_status})"
    ok = at_least(version, DOCKER_MIN)
    return ok, (f"Docker Engine {fmt_version(version)} is {'at least' if ok else 'older than'} "
                f"{fmt_version(DOCKER_MIN)}")


def _compose_version(target: Target, compose: str) -> tuple[bool, str]:
    res = target.run([compose, "--version"], timeout=CMD_TIMEOUT)
    if not res.ok:
        return False, f"`{compose} --version` failed (exit {res.exit_status})"
    line = res.stdout.strip().splitlines()[0] if res.stdout.strip() else ""
    version = parse_version(line.split("version", 1)[-1])
    if version is None:
        return False, f"`{compose} --version` gave no version: {line!r}"
    ok = at_least(version, DOCKER_COMPOSE_MIN)
    return ok, (f"{line} ({compose}) is {'at least' if ok else 'older than'} Docker Compose "
                f"{fmt_version(DOCKER_COMPOSE_MIN)}")


def _group_members(group_text: str, name: str) -> tuple[str, list[str]] | None:
    for line in group_text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            return fields[2], [m for m in fields[3].split(",") if m]
    return None


@board_check("docker")
def docker(target: Target, profile: DeviceProfile) -> CheckResult:
    """Docker for the Docker application deployment connector (V1) or application manager (V2)."""
    problems: list[str] = []
    found: list[str] = []
    if profile.greengrass == "v2":
        path = which(target, "docker")
        if path is None:
            problems.append("docker is not on PATH")
        else:
            ok, text = _docker_engine(target, path)
            (found if ok else problems).append(text)
    else:
        path = _in_dirs(target, "docker")
        if path is None:
            problems.append(f"no docker executable in {' or '.join(DOCKER_DIRS)}")
        else:
            ok, text = _docker_engine(target, path)
            (found if ok else problems).append(text)
        compose = _in_dirs(target, "docker-compose")
        if compose is None:
            problems.append(f"no docker-compose executable in {' or '.join(DOCKER_DIRS)}")
        else:
            ok, text = _compose_version(target, compose)
            (found if ok else problems).append(text)
        group = _group_members(target.read_text("/etc/group") or "", "docker")
        passwd = target.read_text("/etc/passwd") or ""
        primary = next((ln.split(":")[3] for ln in passwd.splitlines()
                        if ln.startswith(GG_USER + ":") and ln.count(":") >= 3), None)
        if group is None:
            problems.append("there is no group 'docker'")
        elif GG_USER not in group[1] and primary != group[0]:
            problems.append(f"{GG_USER} is not in group 'docker'")
        else:
            found.append(f"{GG_USER} is in group 'docker'")
        if which(target, "python3") is None:
            problems.append("no python3 on PATH for the connector")
        else:
            found.append("python3 on PATH")
        core_mb = V1_RAM_STREAM_MANAGER_MB if "stream_manager" in profile.features else V1_RAM_MB
        need_mb = core_mb + DOCKER_CONNECTOR_RAM_MB
        have_mb = target.facts().effective_memory_kb // 1024
        if have_mb < need_mb:
            problems.append(f"{have_mb} MB RAM is less than the core's {core_mb} MB plus the connector's "
                            f"{DOCKER_CONNECTOR_RAM_MB} MB")
        else:
            found.append(f"{have_mb} MB RAM >= {need_mb} MB (core + connector)")
    if problems:
        return verdict(False, f"Docker is not ready: {'; '.join(problems)}.")
    return verdict(True, f"Docker is ready: {'; '.join(found)}.")
