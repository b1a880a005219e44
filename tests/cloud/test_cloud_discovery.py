"""The discovery endpoint over real TLS on loopback: schema, 403, 404, revoked and foreign certificates."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from pathlib import Path

import pytest

from harness.cloud.api import Cloud
from harness.cloud.ca import CertificateAuthority, CertInfo, cert_to_pem, key_to_pem
from harness.cloud.discovery import NOT_FOUND_MESSAGE

CORE = "TestCore"  # provisioned by conftest


def _context(cloud: Cloud, cert: Path, key: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cloud.root_ca_path))
    ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def _get(
    cloud: Cloud, port: int, thing: str, as_thing: str, method: str = "GET"
) -> tuple[int, dict[str, object]]:
    files = cloud.device_files(as_thing)
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, context=_context(cloud, files.cert_path, files.key_path), timeout=10
    )
    try:
        conn.request(method, f"/greengrass/discover/thing/{thing}")
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else {}
    finally:
        conn.close()


def _raw_exchange(ctx: ssl.SSLContext, port: int, thing: str) -> bytes:
    """Connect, send a request, return every byte received before the connection closed (or broke)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(
                    f"GET /greengrass/discover/thing/{thing} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
                )
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    received += chunk
        except (ssl.SSLError, ConnectionError, OSError):
            pass
    return received


@pytest.fixture(scope="module")
def server(provisioned: Cloud):  # type: ignore[no-untyped-def]
    srv = provisioned.discovery_server()
    srv.start()
    yield srv
    srv.stop()


def test_binds_loopback_by_default(server) -> None:  # type: ignore[no-untyped-def]
    assert server.host == "127.0.0.1"
    assert server.url == f"https://127.0.0.1:{server.port}"


def test_200_exact_schema(provisioned: Cloud, server) -> None:  # type: ignore[no-untyped-def]
    status, body = _get(provisioned, server.port, "dev-0002", "dev-0002")
    assert status == 200
    assert body == {
        "GGGroups": [
            {
                "GGGroupId": f"greengrassV2-coreDevice-{CORE}",
                "Cores": [
                    {
                        "thingArn": f"arn:aws:iot:us-east-1:123456789012:thing/{CORE}",
                        "Connectivity": [
                            {
                                "Id": "127.0.0.1_8883",
                                "HostAddress": "127.0.0.1",
                                "PortNumber": 8883,
                                "Metadata": "",
                            },
                            {"Id": "second", "HostAddress": "localhost", "PortNumber": 8884, "Metadata": ""},
                        ],
                    }
                ],
                "CAs": [provisioned.core_ca(CORE).pem],
            }
        ]
    }
    assert body["GGGroups"][0]["CAs"][0].startswith("-----BEGIN CERTIFICATE-----\n")  # type: ignore[index]


def test_403_for_another_thing(provisioned: Cloud, server) -> None:  # type: ignore[no-untyped-def]
    status, _body = _get(provisioned, server.port, "dev-0003", "dev-0002")
    assert status == 403
    status, _ = _get(provisioned, server.port, "no-such-thing", "dev-0002")
    assert status == 403


def test_404_for_a_thing_associated_with_no_core(provisioned: Cloud, server) -> None:  # type: ignore[no-untyped-def]
    provisioned.disassociate(CORE, ["dev-0003"])
    try:
        status, body = _get(provisioned, server.port, "dev-0003", "dev-0003")
    finally:
        provisioned.associate(CORE, ["dev-0003"])
    assert (status, body) == (404, {"errorMessage": NOT_FOUND_MESSAGE})
    # a core asking about itself is associated with no core either
    assert _get(provisioned, server.port, CORE, CORE) == (404, {"errorMessage": NOT_FOUND_MESSAGE})


def test_other_paths_and_methods(provisioned: Cloud, server) -> None:  # type: ignore[no-untyped-def]
    files = provisioned.device_files("dev-0001")
    conn = http.client.HTTPSConnection(
        "127.0.0.1", server.port, timeout=10, context=_context(provisioned, files.cert_path, files.key_path)
    )
    conn.request("GET", "/greengrass/other")
    assert conn.getresponse().status == 404
    conn.close()
    assert _get(provisioned, server.port, "dev-0001", "dev-0001", method="POST")[0] == 405


def test_alpn_x_amzn_http_ca(provisioned: Cloud, server) -> None:  # type: ignore[no-untyped-def]
    files = provisioned.device_files("dev-0001")
    ctx = _context(provisioned, files.cert_path, files.key_path, alpn=["x-amzn-http-ca"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "x-amzn-http-ca"
        tls.sendall(b"GET /greengrass/discover/thing/dev-0001 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")


def test_revoked_certificate_gets_no_answer(provisioned: Cloud, server) -> None:  # type: ignore[no-untyped-def]
    task = provisioned.provision_devices(CORE, 1, "revoked-")
    assert task["taskStatus"] == "Success"
    files = provisioned.device_files("revoked-0000")
    ctx = _context(provisioned, files.cert_path, files.key_path)
    assert _raw_exchange(ctx, server.port, "revoked-0000").startswith(b"HTTP/1.1 200 ")
    before = server.stats().get("rejected_certificate", 0)
    provisioned.revoke("revoked-0000")
    assert _raw_exchange(ctx, server.port, "revoked-0000") == b""
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError)):
        _get(provisioned, server.port, "revoked-0000", "revoked-0000")
    assert server.stats()["rejected_certificate"] >= before + 2
    assert provisioned.write_crl().read_bytes().startswith(b"-----BEGIN X509 CRL-----")


def test_foreign_ca_and_unregistered_certificates_get_no_answer(
    provisioned: Cloud,
    server,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    foreign = CertificateAuthority.create("someone else's CA")
    key, cert = foreign.issue_key_and_cert(
        CertInfo("dev-0001").subject(), key_type="ec", days=1, usage="client"
    )
    (tmp_path / "f.pem").write_bytes(cert_to_pem(cert))
    (tmp_path / "f.key").write_bytes(key_to_pem(key))
    ctx = _context(provisioned, tmp_path / "f.pem", tmp_path / "f.key")
    assert _raw_exchange(ctx, server.port, "dev-0001") == b""
    # signed by the right CA but never registered (or deleted since): closed too
    key, cert = provisioned.ctx.root_ca.issue_key_and_cert(
        CertInfo("dev-0001").subject(), key_type="ec", days=1, usage="client"
    )
    (tmp_path / "u.pem").write_bytes(cert_to_pem(cert))
    (tmp_path / "u.key").write_bytes(key_to_pem(key))
    assert (
        _raw_exchange(_context(provisioned, tmp_path / "u.pem", tmp_path / "u.key"), server.port, "dev-0001")
        == b""
    )
    # and no client certificate at all fails the handshake
    bare = ssl.create_default_context(cafile=str(provisioned.root_ca_path))
    assert _raw_exchange(bare, server.port, "dev-0001") == b""
    stats = server.stats()
    assert stats["handshake_failed"] >= 2 and stats["rejected_certificate"] >= 1


def test_stop_joins_threads_and_frees_port(provisioned: Cloud) -> None:
    srv = provisioned.discovery_server(workers=3)
    port = srv.start()
    threads = list(srv._threads)
    assert len(threads) == 4 and all(t.is_alive() for t in threads)
    # a client that connects and never speaks must not hold stop() up
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        srv.stop(timeout=5)
    finally:
        idle.close()
    assert not [t for t in threads if t.is_alive()]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_concurrent_discovery(provisioned: Cloud, server) -> None:  # type: ignore[no-untyped-def]
    results: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        thing = f"dev-{n % 4:04d}"
        status, _ = _get(provisioned, server.port, thing, thing)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(200) == 40
