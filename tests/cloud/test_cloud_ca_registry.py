"""Certificates (EC/RSA, server SANs, CRL) and the registry's guarantees (WAL, atomic transactions)."""

from __future__ import annotations

import ipaddress
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness.cloud.ca import CertificateAuthority, CertInfo, certificate_id, check_key_type
from harness.cloud.files import write_bundle, write_private
from harness.cloud.registry import Registry
from harness.errors import InputError


def test_ca_persists_with_private_key_0600(tmp_path: Path) -> None:
    cert, key = tmp_path / "ca" / "ca.pem", tmp_path / "ca" / "ca.key"
    first = CertificateAuthority.load_or_create(cert, key, "test CA")
    again = CertificateAuthority.load_or_create(cert, key, "test CA")
    assert first.id == again.id and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert first.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize(
    ("key_type", "key_class"), [("ec", ec.EllipticCurvePublicKey), ("rsa", rsa.RSAPublicKey)]
)
def test_device_and_server_certificates(key_type: str, key_class: type) -> None:
    ca = CertificateAuthority.create("ca")
    _, device = ca.issue_key_and_cert(
        CertInfo("dev-1", country="US").subject(), key_type=check_key_type(key_type), days=30, usage="client"
    )
    assert isinstance(device.public_key(), key_class)
    device.verify_directly_issued_by(ca.cert)
    if key_type == "rsa":
        assert device.public_key().key_size == 2048  # type: ignore[union-attr]
    _, server = ca.issue_key_and_cert(
        CertInfo("broker").subject(),
        key_type="ec",
        days=7,
        usage="server",
        sans=["localhost", "127.0.0.1", "::1"],
    )
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert len(certificate_id(server)) == 64
    with pytest.raises(InputError, match="allowed values: ec, rsa"):
        check_key_type("dsa")


def test_crl_lists_revoked_serials() -> None:
    ca = CertificateAuthority.create("ca")
    _, cert = ca.issue_key_and_cert(CertInfo("d").subject(), key_type="ec", days=1, usage="client")
    crl = ca.crl([(cert.serial_number, cert.not_valid_before_utc)])
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]


def test_registry_is_wal_and_transactions_are_atomic(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    assert reg._one("PRAGMA journal_mode") == ("wal",)
    reg.add_things([("a", "device", None, {})])
    with pytest.raises(sqlite3.IntegrityError), reg.transaction():
        reg.add_things([("b", "device", None, {})])
        reg.add_things([("a", "device", None, {})])  # duplicate: the whole transaction rolls back
    assert [t.name for t in reg.things()] == ["a"]
    other = Registry(tmp_path / "r.db")  # a second connection (another process) sees committed state only
    assert other.count_things() == 1
    other.close()
    reg.close()


def test_bundle_and_private_writes(tmp_path: Path) -> None:
    target = tmp_path / "things" / "d"
    (target).mkdir(parents=True)
    (target / "stale").write_text("left over by a crash")
    write_bundle(target, {"key.pem": (b"k", 0o600), "cert.pem": (b"c", 0o644)})
    assert sorted(p.name for p in target.iterdir()) == ["cert.pem", "key.pem"]
    assert stat.S_IMODE((target / "key.pem").stat().st_mode) == 0o600
    assert not list(target.parent.glob(".*.tmp"))
    write_private(tmp_path / "secret", b"s")
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
