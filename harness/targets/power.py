"""Power drivers for real boards: how the harness switches a board on, off and cuts it.

Like labgrid's ExternalPowerDriver, the board's profile names argv lists for a relay or smart-plug tool;
code holds no knowledge of any particular switch.
"""

from __future__ import annotations

import subprocess

from harness.errors import TargetError
from harness.profiles import PowerConfig

POWER_CMD_TIMEOUT_S = 60.0


class PowerDriver:
    """Runs the profile's power commands on the host."""

    def __init__(self, cfg: PowerConfig, board: str) -> None:
        self.cfg = cfg
        self.board = board

    @property
    def can_cut(self) -> bool:
        return self.cfg.driver == "command"

    def _run(self, what: str, argv: list[str]) -> None:
        if self.cfg.driver == "none":
            raise TargetError(
                f"{self.board}: no power control configured (power.driver is 'none'); cannot {what}"
            )
        if not argv:
            return
        try:
            res = subprocess.run(
                argv, capture_output=True, text=True, timeout=POWER_CMD_TIMEOUT_S, check=False
            )
        except FileNotFoundError:
            raise TargetError(f"{self.board}: power command {argv[0]!r} ({what}) not found") from None
        except subprocess.TimeoutExpired:
            raise TargetError(
                f"{self.board}: power command {argv!r} ({what}) did not finish in {POWER_CMD_TIMEOUT_S:g} s"
            ) from None
        if res.returncode != 0:
            raise TargetError(
                f"{self.board}: power command {argv!r} ({what}) failed with exit "
                f"{res.returncode}: {res.stderr.strip()}"
            )

    def on(self) -> None:
        self._run("switch on", self.cfg.cmd_on)

    def off(self) -> None:
        self._run("switch off", self.cfg.cmd_off)

    def cut(self) -> None:
        self._run("cut power", self.cfg.cmd_cut)
