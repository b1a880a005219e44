"""The agent's own settings (``<root>/config/agent.json``): step timeouts, deployment limits, faults.

Defaults are the Greengrass nucleus defaults (core-behaviour.md: install 120 s, startup 120 s, shutdown
15 s, recover 60 s); tests write small values here instead of waiting minutes. A recipe step's own
``Timeout`` still wins, as on a real core. Unknown keys are an error naming the key, so a typo in a test
does not silently fall back to a two-minute default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .faults import FAULTS, unknown_faults


class SettingsError(ValueError):
    """``agent.json`` is unreadable or names an unknown key, fault or a bad value."""


@dataclass
class AgentSettings:
    """Everything the agent reads at start; one JSON object with these keys."""

    install_timeout: float = 120.0
    startup_timeout: float = 120.0
    shutdown_timeout: float = 15.0
    recover_timeout: float = 60.0
    #: Errors older than this no longer count towards BROKEN (the nucleus ``errorResetTime``, 1 h).
    error_reset_time: float = 3600.0
    #: A deployment still waiting for its components after this long is FAILED.
    deployment_timeout: float = 600.0
    #: After a nucleus update, how long every auto-start component gets to be RUNNING/FINISHED.
    health_check_timeout: float = 120.0
    #: Components must hold RUNNING/FINISHED this long before a deployment is SUCCEEDED, so a run step that
    #: fails right after starting is not reported as a success.
    deployment_stable: float = 1.0
    #: After SIGTERM, how long a component's processes get before SIGKILL.
    kill_grace: float = 5.0
    #: Longest sleep of the main loop (child exits and CLI requests wake it earlier).
    tick: float = 0.2
    #: Compact config.tlog after this many records.
    compact_after: int = 256
    thing_name: str = ""
    faults: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        bad = unknown_faults(self.faults)
        if bad:
            raise SettingsError(f"unknown fault(s) {', '.join(bad)}; allowed: {', '.join(FAULTS)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise SettingsError(f"setting {f.name!r} must not be negative (got {value})")

    def has(self, fault: str) -> bool:
        return fault in self.faults

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "agent.json") -> AgentSettings:
        allowed = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise SettingsError(
                f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            default = getattr(cls(), key)
            if isinstance(default, list):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise SettingsError(f"{source}: key {key!r} must be a list of strings (got {value!r})")
            elif isinstance(default, str):
                if not isinstance(value, str):
                    raise SettingsError(f"{source}: key {key!r} must be a string (got {value!r})")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SettingsError(f"{source}: key {key!r} must be a number (got {value!r})")
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str) -> AgentSettings:
        """Settings from a file; a missing file means all defaults."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{path}: cannot read agent settings: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: agent settings must be a JSON object")
        return cls.from_mapping(data, path)

    @classmethod
    def load_with_faults(cls, path: str, faults: list[str] | tuple[str, ...]) -> AgentSettings:
        """Settings from a file plus faults given on a command line (the service and the loader)."""
        settings = cls.load(path)
        if not faults:
            return settings
        merged = sorted(set(settings.faults) | set(faults))
        return cls.from_mapping({**json.loads(settings.to_json()), "faults": merged}, path)
