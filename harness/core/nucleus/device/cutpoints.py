"""Named cut points: where a power-loss test may freeze the agent so the harness can cut power right there.

Why a freeze and not a kill: the harness must cut the power of the whole target (processes and unflushed
writes), not just end one process; the agent only announces that it reached the point and then waits.

Protocol (the power-loss suite relies on it exactly): when the environment variable ``GG_CUTPOINT`` is
``name`` or ``name@N`` and this is the N-th hit (default 1) of ``name`` in this process, the agent writes
``name@N\\n`` to the file named by ``GG_CUTPOINT_MARKER`` (write + fsync), then sleeps forever. Any other
hit is a no-op. The agent passes both variables through from its own environment: the loader hands them to
every nucleus it launches, and ``NucleusDriver.start(env=...)`` / ``ReferenceNucleusAdapter.start_argv(env)``
put them in front of the start command (``env GG_CUTPOINT=... GG_CUTPOINT_MARKER=... nucleus --daemon``).

Every name (``<step>`` parts are listed in full):

- ``config.tlog.append``: a transaction was appended to ``config.tlog``, before its fsync.
- ``meta.between_renames``: a metadata file was moved ``X -> X~``, before ``X+ -> X``.
- ``deployment.planned``, ``deployment.committed``, ``deployment.applied``, ``deployment.finishing``:
  phases of a component deployment (plan written; config committed; components told; before the
  terminal status is written).
- ``deployment.nucleus_components_stopped``, ``deployment.nucleus_persisted``: a nucleus update stopped
  every component; wrote its ongoing record (``deployments/ongoing/``), before preparing the launch dir.
- ``launch.unpacked``, ``launch.new_linked``: the new launch directory ``alts/<deploymentId>`` is unpacked;
  ``alts/new`` points at it (nucleus side, before it exits with 100).
- ``launch.old_linked``, ``launch.current_linked``, ``launch.new_removed``: the loader's switch on start
  (``alts/old`` -> previous current, ``alts/current`` -> new, ``alts/new`` removed).
- ``launch.link_removed``: only with the ``non_atomic_launch_switch`` fault: a launch-directory link was
  removed and its replacement not yet created (a cut here leaves e.g. no ``alts/current``).
- ``bootstrap``: the nucleus runs its bootstrap step of an update (after ``launch.new_linked``, before
  the exit that restarts it).
- ``activation.before_status``: the new version is activated and healthy, before the status is reported.
- ``rollback.broken_linked``, ``rollback.current_linked``, ``rollback.old_removed``,
  ``rollback.panic_marked``: the loader's rollback after three failed starts (``alts/broken`` -> current,
  ``alts/current`` -> old, ``alts/old`` removed, ``restart_panic`` written); a health-check rollback by
  the nucleus uses the first three names as well.
- ``ota.pre_scripts_done``, ``ota.installed``, ``ota.post_scripts_done``: phases of a V1 OTA job.
"""

from __future__ import annotations

import os
import time

ENV_POINT = "GG_CUTPOINT"
ENV_MARKER = "GG_CUTPOINT_MARKER"
NAMES = (
    "config.tlog.append",
    "meta.between_renames",
    "deployment.planned",
    "deployment.committed",
    "deployment.applied",
    "deployment.finishing",
    "deployment.nucleus_components_stopped",
    "deployment.nucleus_persisted",
    "launch.unpacked",
    "launch.new_linked",
    "launch.old_linked",
    "launch.current_linked",
    "launch.new_removed",
    "launch.link_removed",
    "bootstrap",
    "activation.before_status",
    "rollback.broken_linked",
    "rollback.current_linked",
    "rollback.old_removed",
    "rollback.panic_marked",
    "ota.pre_scripts_done",
    "ota.installed",
    "ota.post_scripts_done",
)

_hits: dict[str, int] = {}


def wanted() -> tuple[str, int] | None:
    """(name, N) asked for in the environment, or None."""
    value = os.environ.get(ENV_POINT, "")
    if not value:
        return None
    name, sep, count = value.partition("@")
    try:
        return name, int(count) if sep else 1
    except ValueError:
        return None


def cutpoint(name: str) -> None:
    """Freeze here when this hit is the one the environment names; otherwise do nothing."""
    asked = wanted()
    if asked is None or asked[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != asked[1]:
        return
    marker = os.environ.get(ENV_MARKER, "")
    if marker:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{name}@{asked[1]}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    while True:  # the harness cuts the power now; nothing after this point may run
        time.sleep(3600)
