"""A bare HTTPS discovery request, to see exactly what the endpoint answers (status, body, or nothing)."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 15.0


@dataclass
class DiscoveryAnswer:
    status: int | None  # None: the connection was closed without an HTTP answer
    body: Any = None
    raw: str = ""
    error: str = ""


def discover_raw(
    port: int,
    root_ca: Path,
    cert: Path | None,
    key: Path | None,
    thing: str,
    host: str = "127.0.0.1",
    timeout: float = DEFAULT_TIMEOUT,
) -> DiscoveryAnswer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(root_ca))
    ctx.check_hostname = False  # the endpoint's name is not what is being qualified here
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["x-amzn-http-ca"])
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", f"/greengrass/discover/thing/{thing}")
        resp = conn.getresponse()
        raw = resp.read().decode(errors="replace")
    except (http.client.RemoteDisconnected, ssl.SSLError, ConnectionError, OSError) as exc:
        return DiscoveryAnswer(None, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    try:
        body = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        body = None
    return DiscoveryAnswer(resp.status, body, raw)
