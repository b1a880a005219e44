"""Checks that the commands the OTA agent and the test tooling call exist on the device's PATH.

The V1 OTA agent relies on GNU behaviour of its commands, so a BusyBox applet (a symlink to, or a hard link
of, the busybox binary) counts as missing for it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from harness.checks.catalog import OTA_COMMANDS, OTA_SHELL, PRETEST_COMMANDS
from harness.checks.common import CMD_TIMEOUT, sh, verdict
from harness.checks.registry import board_check
from harness.checks.result import CheckResult
from harness.profiles import DeviceProfile
from harness.targets.base import Target

#: For each argument: `command -v`; a shell builtin (no slash) is looked up on PATH as a file instead; then
#: `readlink -f`, and whether the file is the busybox binary itself (catches hard-linked applets).
#: Prints one line per argument: name TAB path TAB resolved TAB busybox(yes/no).
RESOLVE = r"""
bb=$(command -v busybox 2>/dev/null) || bb=""
case "$bb" in /*) ;; *) bb="" ;; esac
for c in "$@"; do
  p=$(command -v "$c" 2>/dev/null) || p=""
  case "$p" in
    /*) ;;
    *) p=""
       case "$c" in
         /*) [ -f "$c" ] && [ -x "$c" ] && p="$c" ;;
         *) oldifs=$IFS; IFS=:
            for d in $PATH; do
              if [ -f "$d/$c" ] && [ -x "$d/$c" ]; then p="$d/$c"; break; fi
            done
            IFS=$oldifs ;;
       esac ;;
  esac
  r=""
  same=no
  if [ -n "$p" ]; then
    r=$(readlink -f "$p" 2>/dev/null) || r=""
    [ -n "$r" ] || r="$p"
    if [ -n "$bb" ] && [ "$r" -ef "$bb" ]; then same=yes; fi
  fi
  printf '%s\t%s\t%s\t%s\n' "$c" "$p" "$r" "$same"
done
"""


@dataclass(frozen=True)
class Resolved:
    """Where a command name leads on the device."""

    name: str
    path: str
    resolved: str
    busybox: bool

    @property
    def found(self) -> bool:
        return bool(self.path)

    @property
    def is_busybox(self) -> bool:
        return self.busybox or posixpath.basename(self.resolved) == "busybox"


def resolve_commands(target: Target, names: tuple[str, ...]) -> dict[str, Resolved]:
    """Resolve ``names`` on the device's PATH in one round trip."""
    res = target.run(sh(RESOLVE, *names), timeout=CMD_TIMEOUT)
    out: dict[str, Resolved] = {}
    for line in res.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] in names:
            out[fields[0]] = Resolved(fields[0], fields[1], fields[2], fields[3] == "yes")
    for name in names:  # a name the script did not report (the shell died?) is missing
        out.setdefault(name, Resolved(name, "", "", False))
    return out


@board_check("ota_commands")
def ota_commands(target: Target, profile: DeviceProfile) -> CheckResult:
    """Each OTA agent command resolves to a real binary (not BusyBox), and /bin/bash exists."""
    found = resolve_commands(target, (*OTA_COMMANDS, OTA_SHELL))
    missing = [n for n, r in found.items() if not r.found]
    applets = [f"{n} -> {r.resolved}" for n, r in found.items() if r.found and r.is_busybox]
    total = len(OTA_COMMANDS) + 1
    if missing or applets:
        parts = []
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if applets:
            parts.append(f"BusyBox applets (count as missing): {', '.join(applets)}")
        bad = len(missing) + len(applets)
        return verdict(False, f"{bad} of {total} commands the OTA agent needs are not real binaries "
                       f"({'; '.join(parts)}).")
    return verdict(True, f"All {total} commands the OTA agent needs resolve to real binaries, "
                   f"{OTA_SHELL} included.")


@board_check("pretest_commands")
def pretest_commands(target: Target, profile: DeviceProfile) -> CheckResult:
    """The basic commands the V2 test tooling calls are files on PATH (a shell builtin alone is not)."""
    found = resolve_commands(target, PRETEST_COMMANDS)
    missing = [n for n, r in found.items() if not r.found]
    notes = "'mkinfo' in the requirements table is read as mkfifo (no command named mkinfo exists)"
    if missing:
        return verdict(False, f"{len(missing)} of {len(PRETEST_COMMANDS)} basic commands are not on PATH: "
                       f"{', '.join(missing)}.", notes=notes)
    return verdict(True, f"All {len(PRETEST_COMMANDS)} basic commands are on PATH.", notes=notes)
