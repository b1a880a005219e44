"""The Greengrass discovery endpoint: HTTPS with mutual TLS on loopback, in the cloud's exact schema.

``GET /greengrass/discover/thing/{thingName}`` answers 200 with the groups (one per associated core, its
connectivity and its CA), 403 when the client certificate does not belong to ``thingName``, 404 when the
thing is associated with no core. A certificate from another CA fails the TLS handshake, and a revoked,
inactive or unregistered certificate gets the connection closed right after the handshake with no HTTP
answer at all, as AWS IoT does. Connections are served by a fixed pool of threads so ten thousand devices
discovering at once queue instead of starting ten thousand threads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import logging
import queue
import re
import selectors
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from cryptography import x509

from harness.cloud.ca import CertInfo, cert_to_pem, certificate_id_from_der, key_to_pem, load_certificate
from harness.cloud.context import CloudContext
from harness.cloud.files import write_atomic, write_private
from harness.errors import InfraError, InputError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443
ALPN_PROTOCOLS = ["x-amzn-http-ca", "http/1.1"]
NOT_FOUND_MESSAGE = "The thing provided for discovery was not found"
FORBIDDEN_MESSAGE = "The certificate is not allowed to discover this thing"
GROUP_PREFIX = "greengrassV2-coreDevice-"
LOOPBACK_SANS = ("localhost", "127.0.0.1", "::1")
_PATH = re.compile(r"^/greengrass/discover/thing/([^/]+)$")


#: Seeded defects of the discovery endpoint, so that scenario D3 can be shown to fail.
FAULTS: dict[str, str] = {
    "revoked_answered": "revoked or unregistered certificates get an HTTP answer (D3)",
    "any_thing_answered": "a device may discover another thing's core (no 403) (D3)",
}


def discovery_response(
    ctx: CloudContext, cert_der: bytes, thing_name: str, faults: frozenset[str] = frozenset()
) -> tuple[int, dict[str, Any]]:
    """The status and JSON body discovery returns for a device presenting ``cert_der``."""
    reg = ctx.registry
    owned = reg.things_of_certificate(certificate_id_from_der(cert_der))
    if thing_name not in owned and "any_thing_answered" not in faults:
        return 403, {"errorMessage": FORBIDDEN_MESSAGE}
    groups = []
    for core in reg.cores_of_device(thing_name):
        row = reg.core(core)
        if row is None:
            continue
        groups.append(
            {
                "GGGroupId": f"{GROUP_PREFIX}{core}",
                "Cores": [
                    {
                        "thingArn": ctx.thing_arn(core),
                        "Connectivity": [c.to_json() for c in reg.connectivity(core)],
                    }
                ],
                "CAs": [row.ca_pem],
            }
        )
    if not groups:
        return 404, {"errorMessage": NOT_FOUND_MESSAGE}
    return 200, {"GGGroups": groups}


def certificate_allowed(ctx: CloudContext, cert_der: bytes) -> bool:
    """Only registered, ACTIVE certificates may talk to the endpoint at all."""
    row = ctx.registry.certificate(certificate_id_from_der(cert_der))
    return row is not None and row.status == "ACTIVE"


def server_credentials(ctx: CloudContext, sans: Sequence[str]) -> tuple[Path, Path]:
    """The endpoint's server certificate (signed by the root CA), reissued when SANs or the CA changed."""
    directory = ctx.layout.discovery_dir
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    wanted = list(dict.fromkeys([*LOOPBACK_SANS, *sans]))
    if cert_path.exists() and key_path.exists():
        try:
            cert = load_certificate(cert_path.read_bytes(), str(cert_path))
            have = {
                str(v)
                for v in cert.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value.get_values_for_type(x509.DNSName)
            }
            have |= {
                str(v)
                for v in cert.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value.get_values_for_type(x509.IPAddress)
            }
            fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=1)
            if fresh and cert.issuer == ctx.root_ca.cert.subject and all(_norm(s) in have for s in wanted):
                return cert_path, key_path
        except Exception:  # unreadable or foreign: issue a new one
            log.info("reissuing discovery server certificate %s", cert_path)
    key, cert = ctx.root_ca.issue_key_and_cert(
        CertInfo(common_name="greengrass-ats.iot.localhost").subject(),
        key_type="ec",
        days=365,
        usage="server",
        sans=wanted,
    )
    write_private(key_path, key_to_pem(key))
    write_atomic(cert_path, cert_to_pem(cert))
    return cert_path, key_path


def _norm(san: str) -> str:
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


class _Handler(BaseHTTPRequestHandler):
    """One HTTP exchange per connection (``Connection: close``) so no worker idles on keep-alive."""

    server_version = "gg-harness-discovery/1.0"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server = cast(DiscoveryServer, self.server)
        match = _PATH.match(urlsplit(self.path).path)
        if match is None:
            server.count("not_routed")
            self._send(404, {"errorMessage": "No such resource"})
            return
        tls = cast(ssl.SSLSocket, self.request)
        der = tls.getpeercert(binary_form=True)
        assert der is not None  # the handshake required a client certificate
        status, body = discovery_response(server.ctx, der, unquote(match.group(1)), server.faults)
        server.count(f"http_{status}")
        self._send(status, body)

    def _method_not_allowed(self) -> None:
        cast(DiscoveryServer, self.server).count("http_405")
        self._send(405, {"errorMessage": "Method not allowed"})

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _method_not_allowed

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("discovery %s: " + format, self.client_address[0], *args)


class DiscoveryServer:
    """The endpoint in background threads: ``start()`` returns the port, ``stop()`` joins every thread."""

    def __init__(
        self,
        ctx: CloudContext,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        workers: int = 16,
        handshake_timeout: float = 10.0,
        io_timeout: float = 10.0,
        backlog: int = 1024,
        extra_sans: Sequence[str] = (),
        faults: Sequence[str] = (),
    ) -> None:
        unknown = sorted(set(faults) - set(FAULTS))
        if unknown:
            raise InputError(f"unknown discovery fault(s) {', '.join(unknown)}; allowed: {', '.join(FAULTS)}")
        self.faults = frozenset(faults)
        self.ctx = ctx
        self.host = host
        self.requested_port = port
        self.workers = max(1, workers)
        self.handshake_timeout = handshake_timeout
        self.io_timeout = io_timeout
        self.backlog = backlog
        self.extra_sans = list(extra_sans)
        self.port = 0
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._pending: queue.Queue[tuple[socket.socket, Any]] = queue.Queue(maxsize=backlog)
        self._threads: list[threading.Thread] = []
        self._active: set[socket.socket] = set()
        self._active_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._ssl: ssl.SSLContext | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def start(self) -> int:
        if self._listener is not None:
            return self.port
        sans = [self.host] if self.host not in ("0.0.0.0", "::", "") else []
        cert, key = server_credentials(self.ctx, [*sans, *self.extra_sans])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cadata=self.ctx.root_ca.pem.decode())
        context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(ALPN_PROTOCOLS)
        self._ssl = context
        try:
            family = socket.getaddrinfo(self.host, self.requested_port, type=socket.SOCK_STREAM)[0][0]
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.requested_port))
            listener.listen(min(self.backlog, socket.SOMAXCONN))
        except OSError as exc:
            raise InfraError(
                f"discovery endpoint cannot listen on {self.host}:{self.requested_port}: {exc}"
            ) from exc
        listener.setblocking(False)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._stop.clear()
        self._threads = [threading.Thread(target=self._accept_loop, name="discovery-accept", daemon=True)]
        self._threads += [
            threading.Thread(target=self._worker_loop, name=f"discovery-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        log.info("discovery endpoint listening on %s", self.url)
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, abort connections still open, and join every thread within ``timeout``."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while True:
            with self._active_lock:  # unblock workers waiting in a handshake or a read
                for conn in list(self._active):
                    _close_quietly(conn, shutdown=True, close=False)
            for thread in self._threads:
                thread.join(0.05)
            if not any(t.is_alive() for t in self._threads) or time.monotonic() >= deadline:
                break
        alive = [t.name for t in self._threads if t.is_alive()]
        while True:
            try:
                conn, _ = self._pending.get_nowait()
            except queue.Empty:
                break
            _close_quietly(conn)
        if self._listener is not None:
            _close_quietly(self._listener)
            self._listener = None
        self._threads = []
        if alive:
            raise InfraError(
                f"discovery endpoint threads did not stop within {timeout:g} s: {', '.join(alive)}"
            )

    def __enter__(self) -> DiscoveryServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        """Counters: accepted, handshake_failed, rejected_certificate, http_200/403/404, ..."""
        with self._stats_lock:
            return dict(self._stats)

    def count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    # -- threads ----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(timeout=0.2):
                    continue
                try:
                    conn, addr = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    if self._stop.is_set():
                        return
                    raise
                conn.setblocking(True)
                conn.settimeout(self.handshake_timeout)
                try:
                    self._pending.put_nowait((conn, addr))
                    self.count("accepted")
                except queue.Full:
                    self.count("overloaded")
                    _close_quietly(conn)

    def _worker_loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    conn, addr = self._pending.get(timeout=0.2)
                except queue.Empty:
                    continue
                with self._active_lock:
                    self._active.add(conn)
                try:
                    if not self._stop.is_set():
                        self._serve_connection(conn, addr)
                except Exception:
                    log.exception("discovery connection from %s failed", addr)
                finally:
                    with self._active_lock:
                        self._active.discard(conn)
                    _close_quietly(conn)
        finally:
            self.ctx.registry.release_thread_connection()

    def _serve_connection(self, conn: socket.socket, addr: Any) -> None:
        assert self._ssl is not None
        try:
            tls = self._ssl.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError):
            self.count("handshake_failed")
            return
        with self._active_lock:
            self._active.add(tls)
        try:
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:  # foreign CA, no certificate, timeout, client gave up
                self.count("handshake_failed")
                log.debug("discovery handshake with %s failed: %s", addr, exc)
                return
            der = tls.getpeercert(binary_form=True)
            allowed = der is not None and (
                certificate_allowed(self.ctx, der) or "revoked_answered" in self.faults
            )
            if not allowed:
                # revoked, inactive or unknown: close at once, no HTTP answer (like AWS IoT)
                self.count("rejected_certificate")
                return
            tls.settimeout(self.io_timeout)
            _Handler(tls, addr, cast(Any, self))
        finally:
            with self._active_lock:
                self._active.discard(tls)
            _close_quietly(tls)


def _close_quietly(sock: socket.socket, *, shutdown: bool = False, close: bool = True) -> None:
    """Shut down (wakes a thread blocked on the socket; safe from another thread) and/or close."""
    if shutdown:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, not SSLSocket's
    if close:
        with contextlib.suppress(OSError):
            sock.close()


def serve(
    ctx: CloudContext,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    stop: threading.Event,
    on_ready: Callable[[DiscoveryServer], None] | None = None,
    poll: float = 0.5,
) -> dict[str, int]:
    """Run the endpoint in the foreground until ``stop`` is set (the CLI sets it on SIGINT/SIGTERM)."""
    server = DiscoveryServer(ctx, host, port)
    server.start()
    try:
        if on_ready is not None:
            on_ready(server)
        while not stop.wait(poll):
            pass
    finally:
        server.stop()
    return server.stats()
