"""Durable state of the agent: the config transaction log and metadata files.

Why: after a power cut a core must find its last committed configuration, never a torn or empty one (the
field failures listed in core-behaviour.md "Persistence": an empty ``config.tlog`` leaving the thing name
and certificate paths empty, corrupted metadata causing a boot loop). So:

- ``config.tlog`` is append-only. Records are the nucleus's shape (``{"TS", "TP", "W", "V"}``, one JSON
  object a line); a transaction is its records plus a ``commit`` record, written with one ``write`` and
  fsync'd before it counts. Replay applies only complete transactions and stops at a torn line.
- Compaction writes the whole tree to ``config.tlog+`` (fsync), then renames ``config.tlog`` ->
  ``config.tlog~`` and ``config.tlog+`` -> ``config.tlog`` (fsync of the directory after each rename).
- Metadata files (deployment records, recipes) go the same way: ``X+``, then ``X -> X~``, ``X+ -> X``.

``crash_point`` names every step in between; tests set ``GGNUCLEUS_CRASH_AT`` to die there as a power cut
would (SIGKILL, nothing flushed by Python); ``cutpoints`` names the points a power-loss test freezes
at (``config.tlog.append``, ``meta.between_renames``). The ``non_atomic_config_write`` fault writes in
place instead.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from typing import Any

from .cutpoints import cutpoint

CRASH_ENV = "GGNUCLEUS_CRASH_AT"
TLOG = "config.tlog"
CHANGED, REMOVED, COMMIT = "changed", "removed", "commit"

#: One change of a transaction: (path in the tree, CHANGED or REMOVED, value).
Change = tuple[list[str], str, Any]


def crash_point(name: str) -> None:
    """Die here, at once, when a test asked for it (a stand-in for pulling the plug at this step)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(directory: str) -> None:
    """Make a rename or a new file in ``directory`` durable (the directory entry itself is data)."""
    fd = os.open(directory or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(top: str) -> None:
    """fsync every file and directory under ``top`` (an unpacked archive about to be switched to)."""
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _write_synced(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_in_place(path: str, data: bytes, point: str) -> None:
    """The seeded defect: truncate, then write, no fsync; a cut in between leaves an empty or torn file."""
    with open(path, "wb") as fh:
        fh.flush()
        crash_point(f"{point}:truncated")
        half = len(data) // 2
        fh.write(data[:half])
        fh.flush()
        crash_point(f"{point}:half-written")
        fh.write(data[half:])


def replace_durably(path: str, data: bytes, *, atomic: bool = True, point: str = "meta") -> None:
    """Write ``data`` to ``path`` so that after a cut at any moment ``path`` (or ``path~``) is whole."""
    if not atomic:
        _write_in_place(path, data, point)
        return
    directory = os.path.dirname(path)
    plus, backup = path + "+", path + "~"
    _write_synced(plus, data)
    crash_point(f"{point}:plus-written")
    if os.path.exists(path):
        os.replace(path, backup)
        fsync_dir(directory)
        crash_point(f"{point}:backup-moved")
        cutpoint("meta.between_renames")
    os.replace(plus, path)
    fsync_dir(directory)
    crash_point(f"{point}:committed")
    try:
        os.unlink(backup)
    except FileNotFoundError:
        pass


def read_json_durably(path: str) -> Any:
    """The committed JSON content of a metadata file: ``X``, or ``X~`` when a cut came between the renames.

    ``X+`` is never read: it may be incomplete. Returns None when there is no readable version.
    """
    for candidate in (path, path + "~"):
        try:
            with open(candidate, "rb") as fh:
                raw = fh.read()
        except (FileNotFoundError, IsADirectoryError):
            continue
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
    return None


def write_json_durably(path: str, data: Any, *, atomic: bool = True, point: str = "meta") -> None:
    replace_durably(
        path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), atomic=atomic, point=point
    )


class ConfigStore:
    """The nucleus configuration tree, durable as ``config.tlog`` in ``directory``."""

    def __init__(self, directory: str, *, atomic: bool = True, compact_after: int = 256) -> None:
        self.directory = directory
        self.path = os.path.join(directory, TLOG)
        self.atomic = atomic
        self.compact_after = max(1, compact_after)
        self.tree: dict[str, Any] = {}
        self.records = 0
        #: What loading found, for the core log: which file was replayed and whether its tail was torn.
        self.load_report = ""

    # -- reading ----------------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        """Replay the last committed state; repair leftovers of an interrupted compaction or a torn tail."""
        os.makedirs(self.directory, exist_ok=True)
        plus, backup = self.path + "+", self.path + "~"
        if os.path.exists(plus):
            os.unlink(plus)  # an interrupted compaction: config.tlog (or ~) still has everything
        source = self.path if os.path.exists(self.path) else (backup if os.path.exists(backup) else None)
        if source is None:
            self.tree, self.records, self.load_report = {}, 0, "no config.tlog: empty configuration"
            return self.tree
        tree, records, clean, note = replay(source)
        self.tree, self.records = tree, records
        self.load_report = f"replayed {os.path.basename(source)}: {records} records{note}"
        if source == backup or not clean:
            self.compact()  # rewrite a well-formed log so new records never follow a torn line
        elif os.path.exists(backup):
            os.unlink(backup)
        return self.tree

    def get(self, path: list[str], default: Any = None) -> Any:
        node: Any = self.tree
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return copy.deepcopy(node)

    # -- writing ----------------------------------------------------------------------------------
    def commit(self, changes: list[Change]) -> None:
        """Append one transaction and fsync it; only then apply it to the in-memory tree."""
        if not changes:
            return
        clean: list[Change] = [(list(p), w, json.loads(json.dumps(v))) for p, w, v in changes]
        blob = _encode(clean)
        created = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.environ.get(CRASH_ENV) == "tlog:torn":
                _write_all(fd, blob[: len(blob) // 2])
                os.fsync(fd)
                crash_point("tlog:torn")
            _write_all(fd, blob)
            cutpoint("config.tlog.append")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.directory)
        crash_point("tlog:committed")
        for path, what, value in clean:
            _apply(self.tree, path, what, value)
        self.records += len(clean) + 1
        if self.records >= self.compact_after:
            self.compact()

    def compact(self) -> None:
        """Rewrite the log as a snapshot of the tree, replacing it only by renames."""
        snapshot: list[Change] = [([key], CHANGED, value) for key, value in sorted(self.tree.items())]
        blob = _encode(snapshot) if snapshot else b""
        replace_durably(self.path, blob, atomic=self.atomic, point="compact")
        self.records = len(snapshot) + (1 if snapshot else 0)


def _encode(changes: list[Change]) -> bytes:
    ts = int(time.time() * 1000)
    lines = [
        json.dumps({"TS": ts, "TP": path, "W": what, "V": value}, sort_keys=True)
        for path, what, value in changes
    ]
    lines.append(json.dumps({"TS": ts, "TP": [], "W": COMMIT, "V": len(changes)}))
    return ("\n".join(lines) + "\n").encode("utf-8")


def replay(path: str) -> tuple[dict[str, Any], int, bool, str]:
    """(tree, records applied, whether the file ended cleanly, a note on what was dropped)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    tree: dict[str, Any] = {}
    pending: list[Change] = []
    applied = 0
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # the part after the last newline is torn (or empty)
    for number, line in enumerate(complete, 1):
        try:
            rec = json.loads(line.decode("utf-8"))
            path_, what, value = rec["TP"], rec["W"], rec.get("V")
            if not isinstance(path_, list) or what not in (CHANGED, REMOVED, COMMIT):
                raise ValueError("not a config record")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            return tree, applied, False, f"; stopped at unreadable line {number}, later records dropped"
        if what == COMMIT:
            if value != len(pending):
                return tree, applied, False, f"; commit record at line {number} does not match its records"
            for p, w, v in pending:
                _apply(tree, [str(k) for k in p], w, v)
            applied += len(pending) + 1
            pending = []
        else:
            pending.append((path_, what, value))
    if tail.strip() or pending:
        return tree, applied, False, "; a torn or uncommitted transaction at the end was dropped"
    return tree, applied, True, ""


def _apply(tree: dict[str, Any], path: list[str], what: str, value: Any) -> None:
    if not path:
        if what == CHANGED and isinstance(value, dict):
            tree.clear()
            tree.update(copy.deepcopy(value))
        elif what == REMOVED:
            tree.clear()
        return
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if what == REMOVED:
                return
            child = {}
            node[key] = child
        node = child
    if what == REMOVED:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = copy.deepcopy(value)
