"""A target that runs nothing: canned answers for commands and an in-memory file system, for unit tests.

Shipped in the package (as labgrid ships its fake drivers) so checks and suites can be tested without
root, QEMU or a board. Every command asked for is recorded in ``calls`` and every file read in ``reads``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.errors import TargetError
from harness.targets.base import DEFAULT_TIMEOUT, Facts, RunResult, Target

#: What a command answers: a result, an exception to raise (e.g. ``CommandTimeout``), or a function of the
#: argv returning either (or None to fall through to the next way of answering).
Answer = RunResult | BaseException
Response = Answer | Callable[[list[str]], Answer | None]
Handler = Callable[[list[str]], Answer | None]

NOT_FOUND = 127


def reply(stdout: str = "", stderr: str = "", exit_status: int = 0) -> RunResult:
    """A canned command result (``argv`` is filled in when it is returned)."""
    return RunResult(argv=[], exit_status=exit_status, stdout=stdout, stderr=stderr, duration_s=0.0)


def default_facts() -> Facts:
    return Facts(machine="x86_64", kernel="6.1.0-fake", libc="glibc 2.36", mem_total_kb=2 * 1024 * 1024)


class FakeTarget(Target):
    """Answers ``run`` from ``responses`` (exact argv tuple), then ``handlers`` (in order), then serves
    ``cat PATH`` from ``files``; anything else exits 127 like a missing command.
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        responses: Mapping[tuple[str, ...], Response] | None = None,
        handlers: Iterable[Handler] = (),
        files: Mapping[str, str] | None = None,
        facts: Facts | None = None,
        kernel_is_host: bool = False,
    ) -> None:
        self.name = name
        self.kernel_is_host = kernel_is_host
        self.responses: dict[tuple[str, ...], Response] = dict(responses or {})
        self.handlers: list[Handler] = list(handlers)
        self.files: dict[str, str] = dict(files or {})
        self.fake_facts = facts or default_facts()
        self.calls: list[list[str]] = []
        self.reads: list[str] = []
        self._on = True

    def answer(self, argv: list[str]) -> Answer:
        """The answer ``run`` would give for ``argv`` (without recording the call)."""
        response = self.responses.get(tuple(argv))
        found: Answer | None = None
        if response is not None:
            found = response(argv) if callable(response) else response
        for handler in self.handlers:
            if found is not None:
                break
            found = handler(argv)
        if found is None and len(argv) == 2 and argv[0] == "cat":
            text = self.files.get(argv[1])
            found = reply(text) if text is not None else reply(
                stderr=f"cat: {argv[1]}: No such file or directory", exit_status=1)
        if found is None:
            found = reply(stderr=f"sh: 1: {argv[0] if argv else ''}: not found", exit_status=NOT_FOUND)
        return found

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
        argv = list(argv)
        self.calls.append(argv)
        if not self._on:
            raise TargetError(f"{self.name}: target is powered off")
        found = self.answer(argv)
        if isinstance(found, BaseException):
            raise found
        result = RunResult(argv, found.exit_status, found.stdout, found.stderr, found.duration_s)
        if check and not result.ok:
            raise TargetError(f"command failed on {self.name}:\n{result.evidence()}")
        return result

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
        raise TargetError(f"{self.name}: a FakeTarget starts no processes; use run() with canned responses")

    def read_text(self, remote: str, timeout: float = 30.0) -> str | None:
        self.reads.append(remote)
        if not self._on:
            raise TargetError(f"{self.name}: target is powered off")
        return self.files.get(remote)

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        self.files[remote] = local.read_text()

    def get(self, remote: str, local: Path) -> None:
        if remote not in self.files:
            raise TargetError(f"{self.name}: no file {remote}")
        local.write_text(self.files[remote])

    def facts(self) -> Facts:
        if not self._on:
            raise TargetError(f"{self.name}: target is powered off")
        return self.fake_facts

    def memory_limit_kb(self) -> int | None:
        return self.fake_facts.memory_limit_kb

    def power_on(self) -> None:
        self._on = True

    def power_off(self) -> None:
        self._on = False

    def power_cut(self) -> None:
        self._on = False

    @property
    def is_on(self) -> bool:
        return self._on
