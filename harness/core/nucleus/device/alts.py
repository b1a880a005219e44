"""Launch directories of the nucleus (``<root>/alts``) and the switches between them.

Why symlinks switched by rename: ``alts/current`` must name a whole version after a power cut at any
moment. Each link is set by creating ``<link>.tmp`` and renaming it over the link (then fsync of
``alts``); the ``non_atomic_launch_switch`` fault removes the old link first, so a cut in between leaves
no ``current`` at all - the field failure core-behaviour.md lists; the service starts the loader through
``current`` (``loader.py``), so such a core cannot start. Links: ``current`` (what the loader
launches), ``old`` (the previous version, kept until an update is reported successful), ``new`` (an
update prepared by the nucleus, activated by the loader on its next start) and ``broken`` (a version
rolled back from). Targets are names inside ``alts`` (``init``, a deployment id).
"""

from __future__ import annotations

import os
import shutil

from .cutpoints import cutpoint
from .persist import fsync_dir

CURRENT, OLD, NEW, BROKEN = "current", "old", "new", "broken"
PANIC_MARKER = os.path.join("work", "aws.greengrass.Nucleus", "restart_panic")


class LaunchDirs:
    """The ``alts`` directory of one root."""

    def __init__(self, root: str, *, atomic: bool = True) -> None:
        self.root = root
        self.dir = os.path.join(root, "alts")
        self.atomic = atomic

    def link(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def has(self, name: str) -> bool:
        return os.path.islink(self.link(name))

    def target(self, name: str) -> str | None:
        """The launch directory name a link points at, or None."""
        try:
            return os.path.basename(os.readlink(self.link(name)).rstrip("/"))
        except OSError:
            return None

    def distro(self, name: str = CURRENT) -> str | None:
        """The real ``distro`` directory behind a link, or None when it is missing or dangling."""
        path = os.path.join(self.link(name), "distro")
        return os.path.realpath(path) if os.path.isdir(path) else None

    def describe(self) -> str:
        """Links and launch directories for an error message (``current -> init, new -> d1; dirs: ...``)."""
        try:
            names = sorted(os.listdir(self.dir))
        except OSError as exc:
            return f"cannot list {self.dir}: {exc.strerror}"
        links = [f"{n} -> {self.target(n)}" for n in (CURRENT, NEW, OLD, BROKEN) if self.has(n)]
        if not self.has(CURRENT):
            links.insert(0, "no current")
        dirs = [n for n in names if not os.path.islink(self.link(n))]
        return ", ".join(links) + f"; dirs: {', '.join(dirs) or 'none'}"

    def set(self, name: str, target: str) -> None:
        """Point ``name`` at ``target`` (a name in alts), by rename unless the switch is non-atomic."""
        os.makedirs(self.dir, exist_ok=True)
        path = self.link(name)
        if not self.atomic:
            if os.path.lexists(path):
                os.unlink(path)
                cutpoint("launch.link_removed")  # only the defect has this window: no link at all
            os.symlink(target, path)
            return
        tmp = path + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)
        fsync_dir(self.dir)

    def remove(self, name: str) -> None:
        if os.path.lexists(self.link(name)):
            os.unlink(self.link(name))
            fsync_dir(self.dir)

    # -- what the loader does on every start --------------------------------------------------------
    def activate_on_start(self) -> str:
        """Apply a prepared update or finish an interrupted rollback; return what was done (for the log)."""
        new = self.target(NEW)
        if new is not None:
            current = self.target(CURRENT)
            if current is not None and current != new:
                self.set(OLD, current)
                cutpoint("launch.old_linked")
            self.set(CURRENT, new)
            cutpoint("launch.current_linked")
            self.remove(NEW)
            cutpoint("launch.new_removed")
            return f"activated {new} (old: {current or '-'})"
        # only ``broken`` + ``old`` (Greengrass's loader script): a missing ``current`` is never relinked
        # here - the service could not have started this loader without it
        old = self.target(OLD)
        if old is not None and self.has(BROKEN):
            self.set(CURRENT, old)
            self.remove(OLD)
            return f"resumed rollback to {old}"
        return ""

    def rollback(self) -> bool:
        """``broken`` -> current, ``current`` -> old, drop ``old``; False when there is no old version."""
        old, current = self.target(OLD), self.target(CURRENT)
        if old is None or self.distro(OLD) is None:
            return False
        if current is not None:
            self.set(BROKEN, current)
        cutpoint("rollback.broken_linked")
        self.set(CURRENT, old)
        cutpoint("rollback.current_linked")
        self.remove(OLD)
        cutpoint("rollback.old_removed")
        return True

    def mark_panic(self) -> None:
        path = os.path.join(self.root, PANIC_MARKER)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("restart_panic\n")
            fh.flush()
            os.fsync(fh.fileno())
        cutpoint("rollback.panic_marked")

    def panicked(self) -> bool:
        return os.path.exists(os.path.join(self.root, PANIC_MARKER))

    def clear_panic(self) -> None:
        try:
            os.unlink(os.path.join(self.root, PANIC_MARKER))
        except FileNotFoundError:
            pass

    def drop(self, name: str) -> None:
        """Remove a link and the launch directory it names (unless ``current`` still uses it)."""
        target = self.target(name)
        self.remove(name)
        safe = bool(target) and os.sep not in (target or "") and target not in (".", "..")
        if target and safe and target != self.target(CURRENT):
            shutil.rmtree(os.path.join(self.dir, target), ignore_errors=True)
