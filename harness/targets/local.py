"""The host itself as a target (transport ``local``): for cores installed on the machine running the harness.

Power cut kills every process the target started (they all live in its memory cgroup); power on/off only
start and end that bookkeeping, since the host cannot be switched off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.errors import TargetError
from harness.profiles import DeviceProfile
from harness.targets.base import Target
from harness.targets.cgroup import MemoryCgroup


class LocalTarget(Target):
    """Commands run on the host, inside a cgroup that carries the profile's memory limit."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.name = profile.name
        self.kernel_is_host = False
        self._on = False
        limit = profile.resources.memory_mb
        self.cgroup = MemoryCgroup(
            f"local-{profile.name}-{uuid.uuid4().hex[:8]}", limit * 1024 * 1024 if limit else None
        )

    @property
    def is_on(self) -> bool:
        return self._on

    def power_on(self) -> None:
        self._on = True

    def power_off(self) -> None:
        self.cgroup.kill_all()
        self._on = False

    def power_cut(self) -> None:
        self.cgroup.kill_all()
        self._on = False

    def _enter(self) -> None:
        self.cgroup.join()
        os.setsid()

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
        if not self._on:
            raise TargetError(f"{self.name}: target is powered off")
        full_env = dict(os.environ)
        full_env.update(env or {})
        try:
            return subprocess.Popen(
                list(argv),
                env=full_env,
                cwd=cwd or "/",
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                preexec_fn=self._enter,
            )
        except FileNotFoundError:
            # Same contract as a shell on a board: a missing command is exit status 127, not an exception.
            return subprocess.Popen(
                ["sh", "-c", 'echo "$0: not found" >&2; exit 127', argv[0]],
                stdout=stdout,
                stderr=stderr,
                stdin=stdin,
                preexec_fn=self._enter,
            )

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, remote)
        if mode is not None:
            os.chmod(remote, mode)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def read_text(self, remote: str, timeout: float = 30.0) -> str | None:
        try:
            return Path(remote).read_text(errors="replace")
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return None

    def memory_limit_kb(self) -> int | None:
        mb = self.profile.resources.memory_mb
        return mb * 1024 if mb else None

    def close(self) -> None:
        self.power_off()
        self.cgroup.remove()
