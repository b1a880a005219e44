"""Asynchronous, batched, resumable tasks (the seed's core tasks, device tasks and deployment tasks).

A task and all its items are stored before any work starts; a worker thread then processes the items in
batches, committing each batch's changes together with the items' ``taskStatus`` in one transaction.
Killing the process at any point therefore loses at most the uncommitted batch, and ``resume()`` carries
on from the first item not yet done. A per-task file lock keeps two processes from running one task.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

from harness.cloud.registry import Registry, TaskItemRow, TaskKind, TaskRow, TaskStatus
from harness.cloud.task_requests import TaskRequest
from harness.errors import InfraError

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 100
FINISHED: tuple[TaskStatus, ...] = ("Success", "Failure")
UNFINISHED: tuple[TaskStatus, ...] = ("Waiting", "InProgress")

StopCheck = Callable[[], bool]
Handler = Callable[[TaskRow, Iterator[list[TaskItemRow]], StopCheck], None]


class TaskRunner:
    """Runs stored tasks on one background thread; handlers are chosen by (kind, type)."""

    def __init__(
        self,
        registry: Registry,
        locks_dir: Path,
        handlers: Mapping[tuple[TaskKind, str], Handler],
        *,
        default_batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.registry = registry
        self.locks_dir = locks_dir
        self.handlers = dict(handlers)
        self.default_batch_size = default_batch_size
        self._queue: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._queued: set[str] = set()

    # -- submitting and waiting -------------------------------------------------------------------

    def submit(self, request: TaskRequest, *, batch_size: int | None = None) -> str:
        """Store the task with all its items (status Waiting) and queue it; returns the task id."""
        if (request.kind, request.type) not in self.handlers:
            raise InfraError(f"no handler for {request.kind} tasks of type {request.type}")
        size = max(1, batch_size or self.default_batch_size)
        task_id = uuid.uuid4().hex[:16]
        self.registry.add_task(
            task_id,
            kind=request.kind,
            type_=request.type,
            request=request.request,
            core_name=request.core_name,
            batch_size=size,
            items=request.items,
        )
        self._enqueue(task_id)
        return task_id

    def resume(self) -> list[str]:
        """Queue every stored task that has not finished (after a crash or an interrupted CLI run)."""
        ids = [t.id for t in self.registry.tasks(statuses=UNFINISHED)]
        for task_id in ids:
            self._enqueue(task_id)
        return ids

    def wait(
        self,
        task_id: str,
        timeout: float,
        *,
        progress: Callable[[TaskRow, dict[str, int]], None] | None = None,
        progress_interval: float = 2.0,
    ) -> TaskRow:
        """Block until the task finished; raise ``InfraError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        next_progress = time.monotonic() + progress_interval
        while True:
            task = self.registry.task(task_id)
            if task is None:
                raise InfraError(f"no task {task_id}")
            if task.status in FINISHED:
                return task
            if self._thread is not None and not self._thread.is_alive() and task_id in self._queued:
                raise InfraError(f"task runner stopped before task {task_id} finished")
            now = time.monotonic()
            if now >= deadline:
                counts = self.registry.task_item_counts(task_id)
                raise InfraError(
                    f"task {task_id} did not finish within {timeout:g} s "
                    f"({counts['Success'] + counts['Failure']} of {sum(counts.values())} items done)"
                )
            if progress is not None and now >= next_progress:
                progress(task, self.registry.task_item_counts(task_id))
                next_progress = now + progress_interval
            with self._changed:
                self._changed.wait(timeout=min(0.2, max(0.0, deadline - now)))

    # -- the worker thread ------------------------------------------------------------------------

    def _enqueue(self, task_id: str) -> None:
        with self._lock:
            if task_id in self._queued:
                return
            self._queued.add(task_id)
            self._queue.put(task_id)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="cloud-task-runner", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress; unfinished tasks stay stored and can be resumed."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise InfraError(f"task runner did not stop within {timeout:g} s")
        self._thread = None
        with self._lock:  # what was queued stays stored; resume() queues it again
            self._queued.clear()
            while not self._queue.empty():
                self._queue.get_nowait()

    def idle(self) -> bool:
        with self._lock:
            return not self._queued

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                task_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run_locked(task_id)
            except Exception as exc:  # a bug or infrastructure failure must not kill the runner silently
                log.exception("task %s failed", task_id)
                try:
                    self.registry.set_task_status(task_id, "Failure", f"internal error: {exc}")
                except Exception:
                    log.exception("could not record the failure of task %s", task_id)
            finally:
                with self._lock:
                    self._queued.discard(task_id)
                with self._changed:
                    self._changed.notify_all()
        self.registry.release_thread_connection()

    def _run_locked(self, task_id: str) -> None:
        lock = _try_lock(self.locks_dir / f"task-{task_id}.lock")
        if lock is None:
            log.info("task %s is being run by another process; not running it here", task_id)
            return
        try:
            self._run(task_id)
        finally:
            lock.close()

    def _run(self, task_id: str) -> None:
        task = self.registry.task(task_id)
        if task is None or task.status in FINISHED:
            return
        handler = self.handlers[(task.kind, task.type)]
        self.registry.set_task_status(task_id, "InProgress")
        task = self.registry.task(task_id)
        assert task is not None
        handler(task, self._batches(task), self._stop.is_set)
        counts = self.registry.task_item_counts(task_id)
        if counts["Waiting"] or counts["InProgress"]:
            return  # stopped part-way: stays InProgress, resumable
        total = sum(counts.values())
        if counts["Failure"]:
            self.registry.set_task_status(task_id, "Failure", f"{counts['Failure']} of {total} items failed")
        else:
            self.registry.set_task_status(task_id, "Success")

    def _batches(self, task: TaskRow) -> Iterator[list[TaskItemRow]]:
        after = -1
        while not self._stop.is_set():
            batch = self.registry.task_items(task.id, statuses=UNFINISHED, after=after, limit=task.batch_size)
            if not batch:
                return
            after = batch[-1].position
            yield batch


def _try_lock(path: Path) -> IO[bytes] | None:
    """Take an exclusive, non-blocking lock that the kernel drops if this process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 - held open for the lifetime of the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    os.utime(path)
    return handle
