"""Log lines in the Greengrass nucleus's own text format.

Why the real format: the host reads ``greengrass.log`` (state transitions) and ``<Component>.log``
(``stdout.``/``stderr.`` lines) with one parser, for this agent and for a real core alike:

    2023-11-23T05:41:00.123Z [INFO] (X-lifecycle) com.aws.greengrass.lifecyclemanager.GenericExternalService:
        service-set-state. {serviceName=X, currentState=NEW, newState=INSTALLED}
    2023-11-23T05:41:00.456Z [INFO] (Copier) X: stdout. Hello. {scriptName=services.X.lifecycle.Run, ...}
"""

from __future__ import annotations

import os
import time
from typing import IO

SERVICE_LOGGER = "com.aws.greengrass.lifecyclemanager.GenericExternalService"


def timestamp(now: float | None = None) -> str:
    t = time.time() if now is None else now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def kv(**fields: object) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in fields.items()) + "}"


def line(level: str, thread: str, logger: str, event: str, fields: str = "") -> str:
    return f"{timestamp()} [{level}] ({thread}) {logger}: {event}. {fields}".rstrip() + "\n"


class LogFile:
    """An append-only log file, flushed after every line so a crash loses nothing already logged."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self._fh: IO[str] = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - lives long

    def write(self, text: str) -> None:
        try:
            self._fh.write(text)
            self._fh.flush()
        except (OSError, ValueError):
            pass  # a full disk must not stop the lifecycle

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass
