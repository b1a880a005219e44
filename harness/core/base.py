"""What a scenario may ask of a core: lifecycle, status, logs, certificate rotation, power.

Scenarios drive cores only through this interface and talk to them only over the network (MQTT, HTTPS), so
the same scenario qualifies the harness's reference core or a real Greengrass core over SSH.
"""

from __future__ import annotations

import abc
import socket
import time
from dataclasses import dataclass, field

from harness.errors import TargetError


@dataclass(frozen=True)
class Endpoint:
    """Where client devices reach the core's broker (a discovery connectivity entry)."""

    host: str
    port: int


@dataclass
class CoreStatus:
    running: bool
    version: str = ""
    detail: dict[str, str] = field(default_factory=dict)


class Core(abc.ABC):
    """A Greengrass-style core on a target."""

    #: The core's thing name in the cloud registry.
    name: str
    #: Fault flags (seeded defects) this core was started with; empty for a faithful core.
    faults: frozenset[str] = frozenset()

    @abc.abstractmethod
    def install(self) -> None:
        """Put the core's software, certificates and configuration on the target."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the core and return once its broker accepts connections."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the core cleanly."""

    @abc.abstractmethod
    def status(self) -> CoreStatus:
        """Whether the core runs, and its version."""

    @abc.abstractmethod
    def logs(self) -> str:
        """The core's logs (broker and agents), for reports."""

    @abc.abstractmethod
    def rotate_certificate(self) -> None:
        """Re-issue the broker certificate and apply it as a real core does (restart, disconnect all)."""

    @abc.abstractmethod
    def power_cut(self) -> None:
        """Cut the target's power under the core, then power it on again (the core is not restarted)."""

    @abc.abstractmethod
    def endpoints(self) -> list[Endpoint]:
        """The addresses client devices use (also registered as the core's connectivity)."""

    @abc.abstractmethod
    def move(self, port: int | None = None) -> Endpoint:
        """Give the core a new address (connectivity change) and register it with the cloud side."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the core holds on the host."""


def wait_port(host: str, port: int, timeout: float, *, open_: bool = True, what: str = "") -> None:
    """Wait until a TCP port accepts (or, with ``open_=False``, refuses) connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                is_open = True
        except OSError:
            is_open = False
        if is_open == open_:
            return
        if time.monotonic() > deadline:
            state = "accept" if open_ else "stop accepting"
            raise TargetError(f"{what or f'{host}:{port}'} did not {state} connections within {timeout:g} s")
        time.sleep(0.1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
