"""A target wrapper that writes down every command and file read, so a check's evidence is never incomplete.

Checks call the ordinary ``Target`` API; the recorder keeps the log. A check therefore cannot forget to show
what it saw, and a check that dies half-way (timeout, exception) still leaves the evidence gathered so far.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.errors import CommandTimeout
from harness.targets.base import DEFAULT_TIMEOUT, Facts, RunResult, Target

#: Longest output shown per command or file; longer text keeps its head and tail.
MAX_SHOWN = 3000


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` shortened to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-limit // 3 :]
    omitted = len(text) - len(head) - len(tail)
    return f"{head}\n[... {omitted} characters not shown ...]\n{tail}"


class RecordingTarget(Target):
    """Delegates to ``inner`` and logs each ``run``, ``read_text`` and ``facts`` call as evidence."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner
        self.name = inner.name
        self.kernel_is_host = inner.kernel_is_host
        self.log: list[str] = []

    def evidence(self) -> str:
        return "\n\n".join(self.log)

    def note(self, text: str) -> None:
        self.log.append(text.rstrip())

    # -- recorded capabilities --------------------------------------------------------------------
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
        try:
            res = self.inner.run(argv, timeout=timeout, env=env, cwd=cwd, input=input, check=check)
        except CommandTimeout as exc:
            tail = clip((exc.stdout + ("\n[stderr]\n" + exc.stderr if exc.stderr else "")).strip(), 1500)
            lines = [f"$ {shlex.join(argv)}", tail, f"[timed out after {exc.timeout:g} s]"]
            self.log.append("\n".join(line for line in lines if line))
            raise
        # One shell-quoted word as argv, so `sh -c 'script' sh args` shows as it can be pasted into a shell.
        shown = RunResult([shlex.join(argv)], res.exit_status, clip(res.stdout), clip(res.stderr),
                          res.duration_s)
        self.log.append(shown.evidence())
        return res

    def read_text(self, remote: str, timeout: float = 30.0) -> str | None:
        text = self.inner.read_text(remote, timeout=timeout)
        if text is None:
            self.log.append(f"read {remote}: no such file")
        else:
            self.log.append(f"read {remote} ({len(text)} bytes):\n{clip(text).rstrip()}")
        return text

    def facts(self) -> Facts:
        f = self.inner.facts()
        limit = "none" if f.memory_limit_kb is None else f"{f.memory_limit_kb} kB"
        self.log.append(
            f"facts: machine {f.machine}, kernel {f.kernel}, libc {f.libc or 'unknown'}, "
            f"MemTotal {f.mem_total_kb} kB (/proc/meminfo), enforced memory limit {limit}, "
            f"effective {f.effective_memory_kb} kB"
        )
        return f

    # -- delegated as is --------------------------------------------------------------------------
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
        return self.inner.popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr)

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        self.inner.put(local, remote, mode)

    def get(self, remote: str, local: Path) -> None:
        self.inner.get(remote, local)

    def power_on(self) -> None:
        self.inner.power_on()

    def power_off(self) -> None:
        self.inner.power_off()

    def power_cut(self) -> None:
        self.inner.power_cut()

    @property
    def is_on(self) -> bool:
        return self.inner.is_on

    def memory_limit_kb(self) -> int | None:
        return self.inner.memory_limit_kb()

    def close(self) -> None:
        """The recorder does not own the target: closing it leaves the target as it was."""
