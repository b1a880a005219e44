"""The capability interface every target offers, whatever its transport.

Tests and checks ask for these capabilities (labgrid style) and never for a transport: a check that needs
``uname -m`` calls ``target.run(["uname", "-m"])`` and works the same on a qemu-user chroot, the host or a
board over SSH.
"""

from __future__ import annotations

import abc
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.errors import CommandTimeout

DEFAULT_TIMEOUT = 120.0


@dataclass
class RunResult:
    """What a command did on a target."""

    argv: list[str]
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def evidence(self) -> str:
        """The command and its output, as a report shows it."""
        text = f"$ {' '.join(self.argv)}\n{self.stdout}"
        if self.stderr:
            text += f"\n[stderr]\n{self.stderr}"
        return text.rstrip() + f"\n[exit {self.exit_status}]"


@dataclass
class Facts:
    """What a target says about itself; ``memory_limit_kb`` is the limit the target enforces, if any."""

    machine: str
    kernel: str
    libc: str
    mem_total_kb: int
    memory_limit_kb: int | None = None
    kernel_is_host: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def effective_memory_kb(self) -> int:
        if self.memory_limit_kb is None:
            return self.mem_total_kb
        return min(self.mem_total_kb, self.memory_limit_kb)


class Target(abc.ABC):
    """A device under test.

    Subclasses implement ``popen`` and the power and file operations; ``run`` is built on ``popen`` so
    timeouts and output capture behave the same on every transport.
    """

    name: str
    #: True when kernel facts (/proc, /sys, kernel config) seen on this target belong to the host, not the
    #: device (qemu-user): checks reading them must mark their result informative.
    kernel_is_host: bool = False

    @abc.abstractmethod
    def popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` on the target; the caller owns the returned process."""

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        input: bytes | None = None,
        check: bool = False,
    ) -> RunResult:
        """Run ``argv`` to completion; raise ``CommandTimeout`` (with the output's tail) after ``timeout``."""
        argv = list(argv)
        start = time.monotonic()
        proc = self.popen(
            argv, env=env, cwd=cwd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL
        )
        out, err, finished = _collect(proc, input, timeout)
        if not finished:
            self._kill(proc)
            proc.wait(timeout=30)
            raise CommandTimeout(argv, timeout, out.decode(errors="replace"), err.decode(errors="replace"))
        result = RunResult(
            argv=argv,
            exit_status=_status(proc.returncode),
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            duration_s=time.monotonic() - start,
        )
        if check and not result.ok:
            from harness.errors import TargetError

            raise TargetError(f"command failed on {self.name}:\n{result.evidence()}")
        return result

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop a command started by ``popen`` (and what it started in its session)."""
        import os
        import signal

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()

    @abc.abstractmethod
    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy a host file onto the target."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy a file from the target to the host."""

    def read_text(self, remote: str, timeout: float = 30.0) -> str | None:
        """Contents of a text file on the target, or None when it does not exist."""
        res = self.run(["cat", remote], timeout=timeout)
        return res.stdout if res.ok else None

    @abc.abstractmethod
    def power_on(self) -> None:
        """Bring the target up until it runs commands."""

    @abc.abstractmethod
    def power_off(self) -> None:
        """Clean shutdown: processes get SIGTERM and time to exit."""

    @abc.abstractmethod
    def power_cut(self) -> None:
        """Pull the plug: everything on the target dies at once, no shutdown hook runs."""

    @property
    @abc.abstractmethod
    def is_on(self) -> bool:
        """Whether the target is powered."""

    def facts(self) -> Facts:
        """Machine, kernel, libc and memory, as the target reports them."""
        machine = self.run(["uname", "-m"], timeout=60).stdout.strip()
        kernel = self.run(["uname", "-r"], timeout=60).stdout.strip()
        libc_res = self.run(["getconf", "GNU_LIBC_VERSION"], timeout=60)
        libc = libc_res.stdout.strip() if libc_res.ok else ""
        meminfo = self.read_text("/proc/meminfo") or ""
        mem_total = 0
        for line in meminfo.splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1])
        return Facts(
            machine=machine,
            kernel=kernel,
            libc=libc,
            mem_total_kb=mem_total,
            memory_limit_kb=self.memory_limit_kb(),
            kernel_is_host=self.kernel_is_host,
        )

    def memory_limit_kb(self) -> int | None:
        """The memory limit this target enforces on everything it runs, if any."""
        return None

    def close(self) -> None:
        """Release everything the target holds on the host (power off if on)."""
        if self.is_on:
            self.power_off()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


PIPE_GRACE_S = 1.0


def _collect(proc: subprocess.Popen[bytes], input: bytes | None, timeout: float) -> tuple[bytes, bytes, bool]:
    """Wait for ``proc`` and its output; stop reading shortly after it exits.

    A command that leaves a daemon behind (``sh -c 'server &'``) hands its stdout to the daemon; waiting for
    EOF would hang until the daemon dies, so once the command itself has exited the pipes get a short grace.
    """
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def pump(stream: IO[bytes] | None, key: str) -> None:
        if stream is None:
            return
        try:
            for block in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
                chunks[key].append(block)
        except (OSError, ValueError):
            pass

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True),
    ]
    for r in readers:
        r.start()
    if proc.stdin is not None:
        try:
            if input:
                proc.stdin.write(input)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    try:
        proc.wait(timeout=timeout)
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
    deadline = time.monotonic() + (PIPE_GRACE_S if finished else 2.0)
    for r in readers:
        r.join(max(0.0, deadline - time.monotonic()))
    return b"".join(chunks["out"]), b"".join(chunks["err"]), finished


def _status(returncode: int) -> int:
    """Shell convention: a command killed by signal N reports 128 + N."""
    return 128 - returncode if returncode < 0 else returncode
