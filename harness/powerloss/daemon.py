"""The power-loss layer's daemon: mounts ``CacheFS`` over a directory inside a target's namespaces.

Started by ``layer.PowerLossLayer`` with nsenter into the target's mount and PID namespaces (not its chroot:
it runs the host's Python, which sees the target's root under ``<workdir>/mnt/root``). Because it lives in
the target's PID namespace, the power cut kills it together with the core, and with it every write that was
not flushed; its live tree is a tmpfs in the target's mount namespace, which vanishes with it.

A clean power-off (SIGTERM from the target's init) flushes everything and switches to write-through, as a
board's shutdown runs ``sync`` and unmounts. Prints ``READY`` on stdout once mounted, ``ERROR <why>`` if not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import mfusepy

from harness.powerloss.cachefs import CacheFS
from harness.powerloss.cuts import WriteCut
from harness.powerloss.durability import DurabilityModel

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)}: {res.stderr.strip()}")


class _Ready(CacheFS):
    """Mounts the volatile directories (tmpfs, like /run) once FUSE serves, then reports READY."""

    volatile: tuple[str, ...] = ()
    mountpoint = ""

    def init(self, path: str) -> None:
        threading.Thread(target=self._finish_mount, daemon=True).start()

    def _finish_mount(self) -> None:
        try:
            for rel in self.volatile:
                target = os.path.join(self.mountpoint, rel)
                os.makedirs(target, exist_ok=True)
                _mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", target)
        except Exception as exc:  # reported to the harness, which raises it as a TargetError
            os.write(self.ready_fd, f"ERROR {exc}\n".encode())
            return
        os.write(self.ready_fd, b"READY\n")


def _on_stop(fs: CacheFS) -> None:
    while True:
        signal.sigwait(STOP_SIGNALS)
        fs.flush_all()


def _journal(fs: CacheFS, interval: float) -> None:
    while True:
        time.sleep(interval)
        fs.commit()


def main(argv: list[str] | None = None) -> int:
    cfg: dict[str, Any] = json.loads((argv or sys.argv[1:])[0])
    mountpoint, live = str(cfg["mountpoint"]), str(cfg["live"])
    try:
        dfd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
        os.makedirs(live, exist_ok=True)
        _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", live)
        model = DurabilityModel(live=live, durable=f"/proc/self/fd/{dfd}")
        model.load()
    except Exception as exc:
        print(f"ERROR {exc}", flush=True)
        return 1
    cut = cfg.get("write_cut")
    fs = _Ready(
        model,
        write_cut=WriteCut.parse(str(cut)) if cut else None,
        marker=str(cfg.get("marker") or ""),
        ready_fd=sys.stdout.fileno(),
        journal=cfg.get("commit_s") is not None,
    )
    fs.write_through = bool(cfg.get("write_through"))  # the crash model: the layer only counts and freezes
    fs.volatile = tuple(cfg.get("volatile") or ())
    fs.mountpoint = mountpoint
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_on_stop, args=(fs,), daemon=True).start()
    if cfg.get("commit_s") is not None:
        threading.Thread(target=_journal, args=(fs, float(cfg["commit_s"])), daemon=True).start()
    mfusepy.FUSE(
        fs,
        mountpoint,
        foreground=True,
        nothreads=True,
        allow_other=True,
        default_permissions=True,
        hard_remove=True,
        fsname="gg-powerloss",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
