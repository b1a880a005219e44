"""Start, stop and query the nucleus daemon.

``<root>/bin/nucleus --root R (--daemon | --foreground | --stop | --status) [--fault F]... [--timeout S]``.

Why apart from the daemon: ``--status`` and ``--stop`` run on every check of a test fixture, each as a new
python3 under qemu-user, so they import nothing of the agent itself (about half a second less per call on
an emulated ARM board). ``--daemon`` and ``--foreground`` import the daemon.
"""

from __future__ import annotations

import os
import signal
import sys
import time

SOCKET_NAME = "nucleus-cli.socket"
USAGE = (
    "usage: nucleus --root DIR [--fault NAME]... [--timeout S] [--daemon | --foreground [--kernel] | --stop"
    " | --status]"
)


def socket_path(root: str) -> str:
    return os.path.join(root, SOCKET_NAME)


def pid_path(root: str) -> str:
    """The pid of the service: the loader under ``--daemon`` (the service execs it, the pid stays), the
    nucleus itself under ``--foreground``."""
    return os.path.join(root, "run", "nucleus.pid")


def kernel_pid_path(root: str) -> str:
    """The pid of the nucleus the loader launched (``--kernel``)."""
    return os.path.join(root, "run", "kernel.pid")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def _is_nucleus(pid: int, root: str) -> bool:
    """Whether ``pid`` is this root's nucleus: after a power cut the old pid may belong to anything."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    serving = "--daemon" in argv or "--foreground" in argv  # not a --status/--stop call that got the pid
    service = serving and any(a.endswith("/bin/nucleus") for a in argv)
    loader = any(a.endswith("/distro/bin/loader") for a in argv)  # what the service execs
    return pid != os.getpid() and (service or loader) and root in argv


def read_pid(root: str) -> int | None:
    """The pid of the running nucleus of ``root``, or None."""
    try:
        with open(pid_path(root), encoding="utf-8") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and _is_nucleus(pid, root) else None


def stop_daemon(root: str, timeout: float) -> int:
    """SIGTERM the daemon (it stops its components) and wait; SIGKILL when it does not exit in time."""
    pid = read_pid(root)
    if pid is None:
        print("nucleus not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)  # the loader leads its session: its nucleus goes too
            except OSError:
                os.kill(pid, signal.SIGKILL)
            print(f"nucleus pid {pid} did not stop within {timeout:g} s: killed", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"nucleus stopped, pid {pid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root, faults, mode, timeout, kernel = "", [], "--foreground", 60.0, False
    try:
        while args:
            a = args.pop(0)
            if a == "--root":
                root = args.pop(0)
            elif a == "--fault":
                faults.append(args.pop(0))
            elif a == "--timeout":
                timeout = float(args.pop(0))
            elif a == "--kernel":
                kernel = True
            elif a in ("--daemon", "--foreground", "--stop", "--status"):
                mode = a
            else:
                raise ValueError(f"unknown argument {a!r}")
        if not root:
            raise ValueError("--root is required")
    except (IndexError, ValueError) as exc:
        print(f"nucleus: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    root = os.path.abspath(root)
    if mode == "--stop":
        return stop_daemon(root, timeout)
    if mode == "--status":
        pid = read_pid(root)
        print(f"running, pid {pid}" if pid else "not running")
        return 0 if pid else 3
    from .daemon import serve, start_daemon
    from .settings import AgentSettings, SettingsError

    try:
        settings = AgentSettings.load_with_faults(os.path.join(root, "config", "agent.json"), faults)
    except SettingsError as exc:
        print(f"nucleus: {exc}", file=sys.stderr)
        return 2
    if mode == "--daemon":
        return start_daemon(root, settings, timeout)
    return serve(root, settings, None, kernel=kernel)


if __name__ == "__main__":
    sys.exit(main())
