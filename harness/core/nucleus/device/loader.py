"""The loader: what ``nucleus --daemon`` runs; it launches ``alts/current`` and rolls back a version that
does not start.

Why a separate process: a nucleus cannot restart itself into another version, and a version that crashes
at start cannot roll itself back. As the Greengrass loader script does, on every start the loader first
applies a prepared update (``alts/new``) or finishes an interrupted rollback
(``LaunchDirs.activate_on_start``), then runs the nucleus of ``alts/current``. Exit 0 ends the loader;
100 (restart) and 101 (reboot, here a restart) launch again at once; any other exit counts as a failed
try. After three failed tries in a row it rolls back (``current`` -> ``broken``, ``old`` -> ``current``),
writes ``work/aws.greengrass.Nucleus/restart_panic`` and starts over with the old version. Seeded
defects: ``loader_counts_no_tries`` (a bad version boot-loops) and ``rollback_disabled`` (the loader
gives up).

The environment is passed to each nucleus unchanged, so ``GG_CUTPOINT``/``GG_CUTPOINT_MARKER`` reach it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from . import logs
from .alts import LaunchDirs
from .settings import AgentSettings

MAX_TRIES = 3
RESTART_CODES = (100, 101)
#: Pause between failed tries, so a crashing version does not spin a CPU of a small board.
RETRY_PAUSE_S = 0.5
#: Runs one nucleus from a launch directory: argv[1] is its ``distro/lib``.
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
    "from ggnucleus.control import main; sys.exit(main(sys.argv[1:]))"
)


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
