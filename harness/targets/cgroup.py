"""A memory cgroup per target: the board's RAM limit, and a census of every process the target runs.

Works on cgroup v1 (the memory controller's own hierarchy) and v2 (the unified hierarchy). Processes join
by writing their pid before exec (``join`` as a preexec function), so nothing a target starts escapes the
limit or the final census.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness.errors import InfraError

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_PREFIX = "gg-harness"


def _v1_memory_root() -> Path | None:
    p = CGROUP_ROOT / "memory"
    return p if (p / "memory.limit_in_bytes").exists() else None


def _v2_root() -> Path | None:
    for p in (CGROUP_ROOT / "unified", CGROUP_ROOT):
        if (p / "cgroup.controllers").exists() and "memory" in (p / "cgroup.controllers").read_text().split():
            return p
    return None


class MemoryCgroup:
    """One cgroup with an optional memory limit (bytes)."""

    def __init__(self, name: str, limit_bytes: int | None) -> None:
        v1 = _v1_memory_root()
        v2 = None if v1 else _v2_root()
        if v1 is None and v2 is None:
            raise InfraError(
                "no memory cgroup controller found under /sys/fs/cgroup (needed for memory limits)"
            )
        self.v2 = v2 is not None
        base = v2 if v2 is not None else v1
        assert base is not None
        parent = base / GROUP_PREFIX / _scope()
        parent.mkdir(parents=True, exist_ok=True)
        if self.v2:
            for node in (base, parent.parent, parent):
                try:
                    (node / "cgroup.subtree_control").write_text("+memory")
                except OSError:
                    pass
        self.path = parent / name
        self.path.mkdir(exist_ok=True)
        self.limit_bytes = limit_bytes
        if limit_bytes is not None:
            self._set_limit(limit_bytes)

    @classmethod
    def attach(cls, path: Path) -> MemoryCgroup:
        """An existing group (for removing one a killed harness left)."""
        group = cls.__new__(cls)
        group.path = path
        group.v2 = (path.parents[2] / "cgroup.controllers").exists()
        group.limit_bytes = None
        return group

    def _set_limit(self, limit: int) -> None:
        if self.v2:
            (self.path / "memory.max").write_text(str(limit))
            swap = self.path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            memsw = self.path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                try:
                    memsw.write_text(str(limit))
                except OSError:
                    pass

    def join(self) -> None:
        """Move the calling process into the group (safe to use as a subprocess preexec_fn)."""
        with open(self.path / "cgroup.procs", "w") as fh:
            fh.write(str(os.getpid()))

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def peak_bytes(self) -> int:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def reset_peak(self) -> None:
        if not self.v2:
            try:
                (self.path / "memory.max_usage_in_bytes").write_text("0")
            except OSError:
                pass

    def kill_all(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every member until none is left; returns the pids that had to be killed here."""
        killed: list[int] = []
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return killed
            if time.monotonic() > deadline:
                raise InfraError(f"processes {pids} in {self.path} survived SIGKILL for {timeout:.0f} s")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left and delete the group."""
        if not self.path.exists():
            return
        self.kill_all(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise InfraError(f"cannot remove cgroup {self.path}") from None
                time.sleep(0.05)


def _scope() -> str:
    """Groups are kept per state directory, so concurrent harness installations never see each other's."""
    import hashlib

    from harness.paths import state_dir

    return "s-" + hashlib.sha256(str(state_dir()).encode()).hexdigest()[:10]


def leftover_groups() -> list[Path]:
    """Groups of this state directory that were not removed (asserted empty after test sessions)."""
    out: list[Path] = []
    for base in (p for p in (_v1_memory_root(), _v2_root()) if p is not None):
        parent = base / GROUP_PREFIX / _scope()
        if parent.exists():
            out += [p for p in parent.iterdir() if p.is_dir()]
    return out
