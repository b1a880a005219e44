"""Where compose files come from: an HTTPS object store on loopback standing in for S3, with versions.

The connector downloads ``<bucket>/<key>`` (optionally ``?versionId=``) over real TLS; taking the store down
(``stop``) makes the core "offline" for the connector in the way that matters to seed 003: the download fails
with a connection error, so offline mode has to fall back to the stored copy.
"""

from __future__ import annotations

import ssl
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness.cloud.ca import CertificateAuthority, CertInfo, cert_to_pem, key_to_pem
from harness.cloud.files import write_private

HOST = "127.0.0.1"
FETCH_TIMEOUT_S = 10.0


class FetchError(Exception):
    """The object could not be downloaded (store unreachable, no such object or version)."""


class ComposeStore:
    """Versioned objects served over HTTPS on loopback; ``stop``/``start`` toggle reachability."""

    def __init__(self, base: Path | None = None) -> None:
        """``base``: where the server key lives (the engine directory: collected after a killed harness)."""
        self._objects: dict[tuple[str, str], list[bytes]] = {}
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="gg-compose-store-", dir=base))
        self.ca = CertificateAuthority.create("gg-harness compose store CA")
        key, cert = self.ca.issue_key_and_cert(
            CertInfo(common_name="compose store").subject(),
            key_type="ec",
            days=2,
            usage="server",
            sans=[HOST, "localhost"],
        )
        write_private(self._dir / "server.key", key_to_pem(key))
        (self._dir / "server.pem").write_bytes(cert_to_pem(cert))
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_pem(self) -> str:
        return self.ca.pem.decode()

    def put(self, bucket: str, key: str, data: bytes) -> str:
        """Store a new version of an object; returns its version id ("1", "2", ...)."""
        with self._lock:
            versions = self._objects.setdefault((bucket, key), [])
            versions.append(data)
            return str(len(versions))

    def get(self, bucket: str, key: str, version: str = "") -> bytes | None:
        with self._lock:
            versions = self._objects.get((bucket, key))
            if not versions:
                return None
            if not version:
                return versions[-1]
            if version.isdigit() and 1 <= int(version) <= len(versions):
                return versions[int(version) - 1]
            return None

    def start(self) -> None:
        """Serve (again, on the same port when it was served before)."""
        if self._server is not None:
            return
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                bucket, _, key = url.path.lstrip("/").partition("/")
                version = urllib.parse.parse_qs(url.query).get("versionId", [""])[0]
                data = store.get(urllib.parse.unquote(bucket), urllib.parse.unquote(key), version)
                if data is None:
                    self.send_error(404, "NoSuchKey")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer((HOST, self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self._dir / "server.pem"), str(self._dir / "server.key"))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="compose-store", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving: downloads now fail with a connection error."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    @property
    def online(self) -> bool:
        return self._server is not None

    def url(self, bucket: str, key: str, version: str = "") -> str:
        path = f"/{urllib.parse.quote(bucket)}/{urllib.parse.quote(key)}"
        query = f"?versionId={urllib.parse.quote(version)}" if version else ""
        return f"https://{HOST}:{self.port}{path}{query}"

    def close(self) -> None:
        self.stop()
        import shutil

        shutil.rmtree(self._dir, ignore_errors=True)


def fetch(url: str, ca_pem: str, timeout: float = FETCH_TIMEOUT_S) -> bytes:
    """Download ``url`` over TLS trusting only ``ca_pem``; FetchError says why it failed."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code} {exc.reason} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot reach the compose file store at {url}: {reason}") from None
