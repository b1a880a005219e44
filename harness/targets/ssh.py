"""A real board over SSH (OpenSSH client), with power through the profile's power driver.

Commands are argv lists; the remote side receives them quoted with ``shlex.join`` because ssh hands the
remote login shell a single string. A control master keeps one connection for many commands (board
checks run dozens) and is closed with the target.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.errors import TargetError
from harness.paths import state_dir
from harness.profiles import DeviceProfile
from harness.targets.base import Target
from harness.targets.power import PowerDriver


class SshTarget(Target):
    """A board reached with ``ssh``; power through external commands."""

    def __init__(self, profile: DeviceProfile) -> None:
        if profile.ssh is None:
            raise TargetError(f"profile {profile.name}: an ssh target needs an 'ssh' section")
        self.profile = profile
        self.cfg = profile.ssh
        self.name = profile.name
        self.kernel_is_host = False
        self.power = PowerDriver(profile.power, profile.name)
        self._on = False
        self._ctl_dir = Path(tempfile.mkdtemp(prefix=f"ssh-{profile.name}-", dir=state_dir()))

    def ssh_argv(self) -> list[str]:
        c = self.cfg
        argv = [
            "ssh",
            "-p",
            str(c.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={int(c.connect_timeout_s)}",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self._ctl_dir}/cm",
            "-o",
            "ControlPersist=120",
            "-o",
            "LogLevel=ERROR",
        ]
        if c.known_hosts:
            argv += [
                "-o",
                f"UserKnownHostsFile={os.path.expanduser(c.known_hosts)}",
                "-o",
                "StrictHostKeyChecking=yes",
            ]
        else:
            argv += [
                "-o",
                f"UserKnownHostsFile={self._ctl_dir}/known_hosts",
                "-o",
                "StrictHostKeyChecking=accept-new",
            ]
        if c.key_file:
            argv += ["-i", os.path.expanduser(c.key_file), "-o", "IdentitiesOnly=yes"]
        for opt in c.options:
            argv += ["-o", opt]
        return [*argv, f"{c.user}@{c.host}"]

    @staticmethod
    def remote_command(argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None) -> str:
        """The one string the remote shell runs: cd, environment, then the argv, each quoted."""
        parts: list[str] = []
        if cwd:
            parts.append(f"cd {shlex.quote(cwd)} &&")
        parts.append("exec")
        if env:
            parts += ["env", *(shlex.quote(f"{k}={v}") for k, v in env.items())]
        parts.append(shlex.join(argv))
        return " ".join(parts)

    @property
    def is_on(self) -> bool:
        return self._on

    def power_on(self) -> None:
        if self.power.cfg.driver != "none":
            self.power.on()
        deadline = time.monotonic() + self.profile.power.boot_timeout_s
        last = ""
        while time.monotonic() < deadline:
            res = subprocess.run(
                [*self.ssh_argv(), "--", "true"],
                capture_output=True,
                text=True,
                timeout=self.cfg.connect_timeout_s + 10,
                check=False,
            )
            if res.returncode == 0:
                self._on = True
                return
            last = res.stderr.strip()
            time.sleep(1.0)
        raise TargetError(
            f"{self.name}: no SSH answer from {self.cfg.host}:{self.cfg.port} within "
            f"{self.profile.power.boot_timeout_s:g} s: {last}"
        )

    def _close_master(self) -> None:
        subprocess.run(
            [*self.ssh_argv()[:-1], "-O", "exit", self.ssh_argv()[-1]],
            capture_output=True,
            timeout=15,
            check=False,
        )

    def power_off(self) -> None:
        if self._on:
            self._close_master()
        if self.power.cfg.driver != "none":
            self.power.off()
        self._on = False

    def power_cut(self) -> None:
        self.power.cut()
        self._on = False
        self._close_master()

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
        full = [*self.ssh_argv(), "--", self.remote_command(argv, env, cwd)]
        return subprocess.Popen(full, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True)

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        cmd = f"mkdir -p {shlex.quote(os.path.dirname(remote) or '/')} && cat > {shlex.quote(remote)}"
        if mode is not None:
            cmd += f" && chmod {mode:o} {shlex.quote(remote)}"
        res = self.run(["sh", "-c", cmd], input=local.read_bytes(), timeout=300)
        if not res.ok:
            raise TargetError(f"{self.name}: cannot write {remote}:\n{res.evidence()}")

    def get(self, remote: str, local: Path) -> None:
        proc = self.popen(["cat", remote])
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise TargetError(f"{self.name}: cannot read {remote}: {err.decode(errors='replace').strip()}")
        local.write_bytes(out)

    def close(self) -> None:
        if self._on:
            self._close_master()
            self._on = False
        import shutil

        shutil.rmtree(self._ctl_dir, ignore_errors=True)
