"""What a mosquitto broker running gg_auth needs in its configuration, and what the plugin logs.

Kept beside the plugin because both sides of this contract change together: the option names the C code
accepts, and the decision lines checks grep for in the broker log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from harness.errors import InputError

#: Seeded defects the plugin can be told to have (plugin_opt_faults).
FAULTS = ("no_client_id_check", "no_acl", "allow_no_certificate")
LOG_MODES = ("all", "deny")

#: Options the TLS listener must NOT carry: mosquitto 2.0 then skips plugin authentication entirely (the
#: CONNECT is accepted without MOSQ_EVT_BASIC_AUTH), so a client id that is not the thing name would connect.
FORBIDDEN_LISTENER_OPTIONS = ("use_identity_as_username", "use_subject_as_username")

_STARTING = re.compile(r"mosquitto version \S+ starting")
_RUNNING = re.compile(r"mosquitto version \S+ running")
_FAILED = re.compile(r"gg_auth: error: .*|Error: .*")

_DECISION = re.compile(
    r"gg_auth: (?P<verdict>allow|deny) (?P<operation>connect|publish|subscribe) thing=(?P<thing>\S*) "
    r"client=(?P<client>\S*) reason=(?P<reason>\S*) resource=(?P<resource>.*)$"
)


@dataclass(frozen=True)
class Decision:
    """One authorization decision the plugin logged."""

    verdict: Literal["allow", "deny"]
    operation: Literal["connect", "publish", "subscribe"]
    thing: str
    client: str
    #: ``group:<name>``, ``fault:no_acl``, or why it was denied (client-id-mismatch, no-policy, ...).
    reason: str
    resource: str

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


def plugin_conf_lines(plugin: str, rules: str, faults: Sequence[str] = (), log: str = "all") -> list[str]:
    """The mosquitto.conf lines that load gg_auth (paths as the broker sees them, i.e. on the target).

    The TLS listener itself needs ``require_certificate true`` and none of FORBIDDEN_LISTENER_OPTIONS;
    ``allow_anonymous false`` keeps clients out if the plugin is ever left out of the file.
    """
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise InputError(f"unknown gg_auth fault(s) {names}; allowed: {', '.join(FAULTS)}")
    if log not in LOG_MODES:
        raise InputError(f"gg_auth log mode {log!r} is not one of {', '.join(LOG_MODES)}")
    lines = [f"plugin {plugin}", f"plugin_opt_rules {rules}"]
    if faults:
        lines.append(f"plugin_opt_faults {','.join(faults)}")
    if log != "all":
        lines.append(f"plugin_opt_log {log}")
    return lines


def parse_decisions(log_text: str) -> list[Decision]:
    """The plugin's decisions in a broker log, oldest first (other lines are skipped)."""
    out: list[Decision] = []
    for line in log_text.splitlines():
        m = _DECISION.search(line)
        if m:
            out.append(Decision(**m.groupdict()))  # type: ignore[arg-type]
    return out


def startup_status(log_text: str) -> tuple[Literal["starting", "running", "failed"], str]:
    """Whether the latest broker start in ``log_text`` is up, and the error lines if it failed.

    ``mosquitto -d`` forks before it loads plugins, so its exit status is 0 even when gg_auth refuses a
    malformed rules file and the daemon exits: the log is the only witness. An appended log may hold
    earlier runs; only the part after the last "starting" line counts.
    """
    starts = list(_STARTING.finditer(log_text))
    latest = log_text[starts[-1].start():] if starts else log_text
    if _RUNNING.search(latest):
        return "running", ""
    errors = [m.group(0) for m in _FAILED.finditer(latest)]
    return ("failed", "\n".join(errors)) if errors else ("starting", "")
