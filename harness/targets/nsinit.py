"""PID 1 of a chroot target: builds the board's mounts in a private namespace, then reaps and waits.

Run by ``unshare --pid --mount --fork`` so that killing this one process kills every process of the
target at once (the kernel tears down the PID namespace) and every mount it made disappears with its
mount namespace: a power cut leaves nothing behind on the host. A lifeline pipe from the harness ends the
target if the harness itself dies. Stdlib only, and nothing is imported after the chroot.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import time

_stop_requested = False


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)}: {res.stderr.strip()}")


def _setup(cfg: dict[str, object]) -> str:
    run_dir = str(cfg["run_dir"])
    lower = str(cfg["lower"])
    disk_image = cfg.get("disk_image")
    disk = os.path.join(run_dir, "disk")
    root = os.path.join(run_dir, "root")
    os.makedirs(disk, exist_ok=True)
    os.makedirs(root, exist_ok=True)
    if disk_image:
        _mount("-o", "loop", "-t", "ext4", str(disk_image), disk)
    upper, work = os.path.join(disk, "upper"), os.path.join(disk, "work")
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    _mount("-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", root)
    _mount("-t", "proc", "proc", os.path.join(root, "proc"))
    _mount("--rbind", "/sys", os.path.join(root, "sys"))
    dev = os.path.join(root, "dev")
    _mount("-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", dev)
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        path = os.path.join(dev, node)
        open(path, "w").close()
        _mount("--bind", f"/dev/{node}", path)
    os.makedirs(os.path.join(dev, "pts"))
    _mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620", "devpts", os.path.join(dev, "pts"))
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.makedirs(os.path.join(dev, "shm"))
    _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", os.path.join(dev, "shm"))
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))
    _mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", os.path.join(root, "run"))
    if cfg.get("tmp_noexec"):
        _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev,noexec", "tmpfs", os.path.join(root, "tmp"))
    return root


def _on_term(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True


def _reap() -> int:
    n = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return n
        if pid == 0:
            return n
        n += 1


def _shutdown(grace: float) -> None:
    """Clean power-off: SIGTERM to everyone, then SIGKILL after the grace period, then flush."""
    try:
        os.kill(-1, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap()
        try:
            os.kill(-1, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap()
    os.sync()


def main() -> int:
    cfg = json.loads(sys.argv[1])
    lifeline = int(cfg["lifeline_fd"])
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        root = _setup(cfg)
    except Exception as exc:  # reported to the harness on stdout, which turns it into a TargetError
        print(f"ERROR {exc}", flush=True)
        return 1
    os.chroot(root)
    os.chdir("/")
    print("READY", flush=True)
    grace = float(cfg.get("grace_s", 10.0))
    while not _stop_requested:
        try:
            ready, _, _ = select.select([lifeline], [], [], 0.5)
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise
            ready = []
        if ready and not os.read(lifeline, 1):  # the harness is gone: pull the plug
            os.kill(-1, signal.SIGKILL)
            return 0
        _reap()
    _shutdown(grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
