"""Bulk generation of device keys and certificates, in worker processes when there are many.

RSA 2048 key generation costs ~100 ms per key, so provisioning thousands of devices needs every core;
the work functions here are module-level so a process pool can run them, and return plain bytes so
results pickle cheaply. Files and registry rows are written by the caller, never here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.cloud.ca import (
    CertificateAuthority,
    CertInfo,
    KeyType,
    cert_to_pem,
    certificate_id,
    iso,
    key_to_pem,
    load_certificate,
    load_private_key,
)
from harness.errors import InfraError

RESULT_TIMEOUT = 600.0  # one chunk of RSA keys on a slow machine; never wait forever


@dataclass(frozen=True)
class CredentialRequest:
    """One key pair and certificate to make."""

    name: str
    key_type: KeyType
    cert_info: CertInfo


@dataclass(frozen=True)
class Credentials:
    """A generated key pair and certificate, as PEM bytes plus the facts the registry stores."""

    name: str
    key_type: KeyType
    cert_pem: bytes
    key_pem: bytes
    cert_id: str
    serial: str
    not_after: str


_CA_CACHE: dict[str, CertificateAuthority] = {}


def _ca_from_pem(ca_cert_pem: bytes, ca_key_pem: bytes) -> CertificateAuthority:
    """Parse the CA once per worker process instead of once per chunk."""
    digest = hashlib.sha256(ca_cert_pem + ca_key_pem).hexdigest()
    ca = _CA_CACHE.get(digest)
    if ca is None:
        ca = CertificateAuthority(load_certificate(ca_cert_pem), load_private_key(ca_key_pem))
        if len(_CA_CACHE) > 8:
            _CA_CACHE.clear()
        _CA_CACHE[digest] = ca
    return ca


def issue_device_credentials(
    ca_cert_pem: bytes, ca_key_pem: bytes, requests: Sequence[CredentialRequest]
) -> list[Credentials]:
    """Make a key and a client-auth certificate signed by the CA for every request (worker entry point)."""
    ca = _ca_from_pem(ca_cert_pem, ca_key_pem)
    out: list[Credentials] = []
    for req in requests:
        key, cert = ca.issue_key_and_cert(
            req.cert_info.subject(), key_type=req.key_type, days=req.cert_info.days, usage="client"
        )
        out.append(
            Credentials(
                name=req.name,
                key_type=req.key_type,
                cert_pem=cert_to_pem(cert),
                key_pem=key_to_pem(key),
                cert_id=certificate_id(cert),
                serial=format(cert.serial_number, "x"),
                not_after=iso(cert.not_valid_after_utc),
            )
        )
    return out


class PendingCredentials:
    """Credentials being made, possibly split over several worker processes."""

    def __init__(self, futures: list[Future[list[Credentials]]]) -> None:
        self._futures = futures

    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def result(self, timeout: float = RESULT_TIMEOUT) -> list[Credentials]:
        out: list[Credentials] = []
        for fut in self._futures:
            try:
                out.extend(fut.result(timeout=timeout))
            except TimeoutError as exc:
                raise InfraError(f"certificate generation did not finish within {timeout:g} s") from exc
        return out


class _WorkerProcess:
    """One ``python -m harness.cloud.keygen_worker`` child, spoken to with length-prefixed pickles.

    Plain subprocesses rather than ``multiprocessing``: those re-run the caller's main script in every
    worker (a script without a ``__main__`` guard would provision recursively) and fork-with-threads is
    unsafe. A worker exits on its own when its stdin closes, including when this process is killed.
    """

    def __init__(self) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cloud.keygen_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def call(self, payload: tuple[bytes, bytes, list[CredentialRequest]]) -> list[Credentials]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        send_frame(self.proc.stdin, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        frame = recv_frame(self.proc.stdout)
        if frame is None:
            raise InfraError(f"key generation worker {self.proc.pid} exited (status {self.proc.poll()})")
        status, value = pickle.loads(frame)
        if status != "ok":
            raise InfraError(f"key generation worker failed: {value}")
        result: list[Credentials] = value
        return result

    def close(self, timeout: float = 1.0) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def send_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def recv_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    data = stream.read(size)
    return data if len(data) == size else None


class CredentialFactory:
    """Makes device credentials inline (one worker) or in lazily started worker processes."""

    #: Below this many keys in a batch, the inter-process round trip costs more than it saves.
    POOL_THRESHOLD = 16

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        self._threads: ThreadPoolExecutor | None = None
        self._idle: queue.SimpleQueue[_WorkerProcess] = queue.SimpleQueue()
        self._all: list[_WorkerProcess] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, ca: CertificateAuthority, requests: Sequence[CredentialRequest]) -> PendingCredentials:
        if not requests:
            return PendingCredentials([])
        if self.workers == 1 or len(requests) < self.POOL_THRESHOLD:
            fut: Future[list[Credentials]] = Future()
            try:
                fut.set_result(issue_device_credentials(ca.pem, ca.key_pem, requests))
            except Exception as exc:  # delivered through the future like the pool path
                fut.set_exception(exc)
            return PendingCredentials([fut])
        threads = self._ensure_threads()
        chunk = -(-len(requests) // self.workers)
        futures = [
            threads.submit(self._run_chunk, (ca.pem, ca.key_pem, list(requests[i : i + chunk])))
            for i in range(0, len(requests), chunk)
        ]
        return PendingCredentials(futures)

    def _ensure_threads(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise InfraError("credential factory is closed")
            if self._threads is None:
                self._threads = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="keygen")
            return self._threads

    def _run_chunk(self, payload: tuple[bytes, bytes, list[CredentialRequest]]) -> list[Credentials]:
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                if self._closed:
                    raise InfraError("credential factory is closed") from None
                worker = _WorkerProcess()
                self._all.append(worker)
        try:
            result = worker.call(payload)
        except BaseException:
            worker.close()
            with self._lock:
                if worker in self._all:
                    self._all.remove(worker)
            raise
        self._idle.put(worker)
        return result

    def close(self) -> None:
        """Stop the worker processes (a chunk in progress is abandoned: its items stay Waiting)."""
        with self._lock:
            self._closed = True
            workers, self._all = self._all, []
            threads, self._threads = self._threads, None
        for worker in workers:
            worker.close()
        if threads is not None:
            threads.shutdown(wait=True, cancel_futures=True)
