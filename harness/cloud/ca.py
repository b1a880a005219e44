"""Certificate authorities and certificates, made with ``cryptography``.

The offline cloud has one root CA (it signs device certificates and the discovery endpoint's server
certificate, like Amazon's CA does) and one self-signed CA per core, which is what discovery hands to
client devices and what signs the core's broker certificate (as Greengrass V2's client-device-auth does).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.cloud.files import write_atomic, write_private
from harness.errors import InfraError, InputError

KeyType = Literal["ec", "rsa"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
Usage = Literal["client", "server"]

CLOCK_SKEW = dt.timedelta(hours=1)  # boards with a slightly late clock must still accept new certificates


def check_key_type(value: str) -> KeyType:
    """Narrow a user-supplied key type, naming the allowed values."""
    if value == "ec":
        return "ec"
    if value == "rsa":
        return "rsa"
    raise InputError(f"key type: unknown value {value!r}; allowed values: {', '.join(KEY_TYPES)}")


def generate_key(key_type: KeyType) -> PrivateKey:
    """EC P-256 or RSA 2048: the two key types AWS IoT device certificates commonly use."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_private_key(pem: bytes, source: str = "private key") -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{source}: not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InputError(f"{source}: unsupported key type {type(key).__name__}; allowed values: EC, RSA")
    return key


def load_certificate(pem: bytes | str, source: str = "certificate") -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InputError(f"{source}: not a PEM X.509 certificate: {exc}") from exc


def certificate_id(cert: x509.Certificate) -> str:
    """The AWS IoT certificate id: the SHA-256 of the DER encoding, in hex."""
    return certificate_id_from_der(cert.public_bytes(serialization.Encoding.DER))


def certificate_id_from_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class CertInfo:
    """Subject fields of a device certificate (CDF ``cdfProvisioningParameters.certInfo``)."""

    common_name: str
    country: str | None = None
    organization: str | None = None
    organizational_unit: str | None = None
    locality: str | None = None
    state: str | None = None
    email: str | None = None
    days: int = 365

    def subject(self) -> x509.Name:
        parts: list[tuple[x509.ObjectIdentifier, str | None]] = [
            (NameOID.COUNTRY_NAME, self.country),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.LOCALITY_NAME, self.locality),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (NameOID.COMMON_NAME, self.common_name),
            (NameOID.EMAIL_ADDRESS, self.email),
        ]
        try:
            return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts if value])
        except ValueError as exc:
            raise InputError(f"certInfo: {exc}") from exc


def subject_alt_names(sans: Iterable[str]) -> list[x509.GeneralName]:
    """IP literals become IP SANs, everything else a DNS name (what TLS clients match against)."""
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for san in sans:
        if not san or san in seen:
            continue
        seen.add(san)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    return names


class CertificateAuthority:
    """A CA certificate with its key, able to issue client and server certificates and CRLs."""

    def __init__(
        self,
        cert: x509.Certificate,
        key: PrivateKey,
        cert_path: Path | None = None,
        key_path: Path | None = None,
    ) -> None:
        self.cert = cert
        self.key = key
        self.cert_path = cert_path
        self.key_path = key_path
        self.pem = cert_to_pem(cert)
        self.key_pem = key_to_pem(key)
        self.id = certificate_id(cert)

    @classmethod
    def create(
        cls,
        common_name: str,
        *,
        days: int = 3650,
        key_type: KeyType = "ec",
        organization: str = "gg-harness offline cloud",
    ) -> CertificateAuthority:
        key = generate_key(key_type)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        try:
            cert_pem = cert_path.read_bytes()
            key_pem = key_path.read_bytes()
        except OSError as exc:
            raise InfraError(f"cannot read CA {cert_path} / {key_path}: {exc}") from exc
        return cls(
            load_certificate(cert_pem, str(cert_path)),
            load_private_key(key_pem, str(key_path)),
            cert_path,
            key_path,
        )

    @classmethod
    def load_or_create(
        cls,
        cert_path: Path,
        key_path: Path,
        common_name: str,
        *,
        days: int = 3650,
        key_type: KeyType = "ec",
        fsync: bool = False,
    ) -> CertificateAuthority:
        """Load the CA at the paths, or create and save it (key first, so a cert never lacks its key)."""
        if cert_path.exists() and key_path.exists():
            return cls.load(cert_path, key_path)
        ca = cls.create(common_name, days=days, key_type=key_type)
        ca.save(cert_path, key_path, fsync=fsync)
        return ca

    def save(self, cert_path: Path, key_path: Path, *, fsync: bool = False) -> None:
        write_private(key_path, self.key_pem, fsync=fsync)
        write_atomic(cert_path, self.pem, fsync=fsync)
        self.cert_path = cert_path
        self.key_path = key_path

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        subject: x509.Name,
        *,
        days: float,
        usage: Usage,
        sans: Sequence[str] = (),
    ) -> x509.Certificate:
        """Sign an end-entity certificate: client auth for devices, server auth for brokers."""
        now = dt.datetime.now(dt.UTC)
        key_encipherment = isinstance(public_key, rsa.RSAPublicKey)
        eku = ExtendedKeyUsageOID.CLIENT_AUTH if usage == "client" else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=key_encipherment,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        names = subject_alt_names(sans)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_key_and_cert(
        self, subject: x509.Name, *, key_type: KeyType, days: float, usage: Usage, sans: Sequence[str] = ()
    ) -> tuple[PrivateKey, x509.Certificate]:
        key = generate_key(key_type)
        return key, self.issue(key.public_key(), subject, days=days, usage=usage, sans=sans)

    def crl(
        self, revoked: Iterable[tuple[int, dt.datetime]], *, days: int = 7
    ) -> x509.CertificateRevocationList:
        """A CRL listing (serial, revocation time) pairs, for brokers that check revocation themselves."""
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - CLOCK_SKEW)
            .next_update(now + dt.timedelta(days=days))
        )
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.key, hashes.SHA256())
