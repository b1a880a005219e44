"""The loader: what the core's service runs; it launches ``alts/current`` and rolls back a version that
does not start.

Why a separate process: a nucleus cannot restart itself into another version, and a version that crashes
at start cannot roll itself back. Why it lives in the launch directory: as in Greengrass V2, whose system
service runs ``/bin/sh <root>/alts/current/distro/bin/loader``, the service (``nucleus --daemon``) starts
``<root>/alts/current/distro/bin/loader`` (``LAUNCHER``, shipped in every launch directory), which runs
this module of the same launch directory. So a missing ``alts/current`` (a cut inside a non-atomic
switch) or a deleted loader leaves a core that cannot start - the field failure core-behaviour.md lists -
and nothing outside ``alts`` can mask it. As the Greengrass loader script does, on every start the loader
first applies a prepared update (``alts/new``) or finishes an interrupted rollback
(``LaunchDirs.activate_on_start``), then runs the nucleus of ``alts/current``. Exit 0 ends the loader;
100 (restart) and 101 (reboot, here a restart) launch again at once; any other exit counts as a failed
try. After three failed tries in a row it rolls back (``current`` -> ``broken``, ``old`` -> ``current``),
writes ``work/aws.greengrass.Nucleus/restart_panic`` and starts over with the old version. Seeded
defects: ``loader_counts_no_tries`` (a bad version boot-loops) and ``rollback_disabled`` (the loader
gives up).

The environment is passed to each nucleus unchanged, so ``GG_CUTPOINT``/``GG_CUTPOINT_MARKER`` reach it.
``<python> -S <root>/alts/current/distro/bin/loader --root R [--fault F]...``: the service keeps the pid
(it execs the loader), the loader removes ``run/nucleus.pid`` when it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from . import logs
from .alts import CURRENT, LaunchDirs
from .control import pid_path
from .settings import AgentSettings, SettingsError

MAX_TRIES = 3
RESTART_CODES = (100, 101)
#: Pause between failed tries, so a crashing version does not spin a CPU of a small board.
RETRY_PAUSE_S = 0.5
#: Runs one nucleus from a launch directory: argv[1] is its ``distro/lib``.
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
    "from ggnucleus.control import main; sys.exit(main(sys.argv[1:]))"
)
#: Where the loader is in a launch directory (``distro``-relative), as in Greengrass V2.
LAUNCHER_PATH = "bin/loader"
#: ``distro/bin/loader``: run by the service with the target's python; it imports the loader code of
#: the launch directory it is in (resolved, so a later switch of ``current`` does not mix versions).
LAUNCHER = (
    "#!/usr/bin/env python3\n"
    '"""The loader of the harness reference nucleus: the core\'s service runs '
    '<root>/alts/current/distro/bin/loader."""\n'
    "import os\n"
    "import sys\n\n"
    "sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), 'lib'))\n"
    "from ggnucleus.loader import main  # noqa: E402\n\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
USAGE = "usage: loader --root DIR [--fault NAME]..."


def service_loader(root: str) -> str:
    """The path the service starts: the loader of ``alts/current`` (never resolved by the service)."""
    return os.path.join(root, "alts", CURRENT, "distro", *LAUNCHER_PATH.split("/"))


class Loader:
    def __init__(self, root: str, settings: AgentSettings, python: str = "") -> None:
        self.root = root
        self.settings = settings
        self.python = python or sys.executable
        self.alts = LaunchDirs(root, atomic=not settings.has("non_atomic_launch_switch"))
        self.log_file = logs.LogFile(os.path.join(root, "logs", "loader.log"))
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def log(self, level: str, event: str, **fields: object) -> None:
        self.log_file.write(logs.line(level, "loader", "com.aws.greengrass.Loader", event, logs.kv(**fields)))

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def argv(self, distro: str) -> list[str]:
        argv = [self.python, "-S", "-c", BOOT, os.path.join(distro, "lib"), "--root", self.root]
        argv += ["--foreground", "--kernel"]
        for fault in self.settings.faults:
            argv += ["--fault", fault]
        return argv

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        tries = 0
        while not self.stopping:
            done = self.alts.activate_on_start()
            if done:
                self.log("INFO", "launch-dir-switch", result=done)
            distro = self.alts.distro()
            if distro is None:
                self.log("ERROR", "no-launch-dir", path=self.alts.link("current"))
                return 1
            started = time.time()
            self.child = subprocess.Popen(self.argv(distro), stdin=subprocess.DEVNULL)
            self.log("INFO", "nucleus-launched", pid=self.child.pid, launchDir=self.alts.target("current"))
            code = self._wait_child()
            self.child = None
            self.log("INFO", "nucleus-exited", code=code, ranFor=f"{time.time() - started:.1f}s")
            if self.stopping or code == 0:
                return 0
            if code in RESTART_CODES:
                tries = 0
                continue
            if not self.settings.has("loader_counts_no_tries"):
                tries += 1
            if tries >= MAX_TRIES:
                if self.settings.has("rollback_disabled"):
                    self.log("ERROR", "loader-giving-up", tries=tries, reason="rollback disabled")
                    return 1
                if not self.alts.rollback():
                    self.log("ERROR", "loader-giving-up", tries=tries, reason="no old launch directory")
                    return 1
                self.alts.mark_panic()
                self.log("WARN", "rolled-back", tries=tries, current=self.alts.target("current"))
                tries = 0
                continue
            time.sleep(RETRY_PAUSE_S)
        return 0

    def _wait_child(self) -> int:
        assert self.child is not None
        while True:
            try:
                return self.child.wait()
            except InterruptedError:
                continue


def main(argv: list[str]) -> int:
    """``loader --root R [--fault F]...``: run the loader; remove the service's pid file when it ends."""
    args, root, faults = list(argv), "", []
    try:
        while args:
            a = args.pop(0)
            if a == "--root":
                root = args.pop(0)
            elif a == "--fault":
                faults.append(args.pop(0))
            else:
                raise ValueError(f"unknown argument {a!r}")
        if not root:
            raise ValueError("--root is required")
        settings = AgentSettings.load_with_faults(os.path.join(root, "config", "agent.json"), faults)
    except (IndexError, ValueError, SettingsError) as exc:
        print(f"loader: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    root = os.path.abspath(root)
    try:
        return Loader(root, settings).run()
    finally:
        _drop_own_pid_file(root)


def _drop_own_pid_file(root: str) -> None:
    """Remove ``run/nucleus.pid`` if it still names this process (the service wrote it before the exec)."""
    try:
        with open(pid_path(root), encoding="utf-8") as fh:
            mine = fh.read().strip() == str(os.getpid())
        if mine:
            os.unlink(pid_path(root))
    except (OSError, ValueError):
        pass
