"""Reading the nucleus's text logs: state transitions, step errors and component output with timestamps.

Why from the logs: ``component list`` shows only the current state, and a state such as ERRORED lasts
milliseconds before the nucleus retries. The nucleus logs every transition (``service-set-state``) and
every step start (``shell-runner-start``) with a timestamp; a real core writes the same events, so these
parsers serve both.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field

_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) \[(?P<level>\w+)\] \((?P<thread>[^)]*)\) "
    r"(?P<logger>[^:\s]+): (?P<rest>.*)$"
)
_FIELDS = re.compile(r"(\w+)=(.*?)(?=, \w+=|$)")


@dataclass(frozen=True)
class LogEvent:
    ts: float
    level: str
    logger: str
    event: str
    fields: dict[str, str] = field(default_factory=dict)
    line: str = ""


def parse_ts(text: str) -> float:
    base, _, frac = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs + (float(f"0.{frac}") if frac else 0.0)


def parse_events(text: str) -> list[LogEvent]:
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        rest = m.group("rest")
        fields: dict[str, str] = {}
        if rest.endswith("}") and ". {" in rest:
            rest, _, raw = rest.rpartition(". {")
            fields = dict(_FIELDS.findall(raw[:-1]))
            event = rest
        else:
            event = rest[:-1] if rest.endswith(".") else rest
        out.append(
            LogEvent(parse_ts(m.group("ts")), m.group("level"), m.group("logger"), event, fields, line)
        )
    return out


@dataclass(frozen=True)
class Transition:
    ts: float
    component: str
    old: str
    new: str


def transitions(core_log: str, component: str | None = None) -> list[Transition]:
    """Every ``service-set-state`` of ``component`` (or of all) in ``greengrass.log`` order."""
    out = []
    for e in parse_events(core_log):
        if e.event != "service-set-state":
            continue
        name = e.fields.get("serviceName", "")
        if component is None or name == component:
            out.append(Transition(e.ts, name, e.fields.get("currentState", ""), e.fields.get("newState", "")))
    return out


def errors(core_log: str, component: str) -> list[LogEvent]:
    """``service-errored`` events of a component (their ``statusCode`` says e.g. INSTALL_TIMEOUT)."""
    return [
        e
        for e in parse_events(core_log)
        if e.event == "service-errored" and e.fields.get("serviceName") == component
    ]


def step_starts(component_log: str, step: str | None = None) -> list[LogEvent]:
    """``shell-runner-start`` events (``step`` is e.g. "install", matched on the script name)."""
    out = []
    for e in parse_events(component_log):
        if e.event != "shell-runner-start":
            continue
        if step is None or e.fields.get("scriptName", "").lower().endswith(f".lifecycle.{step.lower()}"):
            out.append(e)
    return out


def output_lines(component_log: str, stream: str = "stdout") -> list[str]:
    """What a component printed, one entry per line, from its ``<Component>.log``."""
    prefix = f"{stream}. "
    out = []
    for e in parse_events(component_log):
        if e.event.startswith(prefix):
            out.append(e.event[len(prefix) :])
    return out
