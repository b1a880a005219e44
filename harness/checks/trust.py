"""Check that the device trusts the root CA of the cloud endpoints the core connects to."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from harness.checks.common import verdict
from harness.checks.registry import board_check
from harness.checks.result import CheckResult
from harness.profiles import DeviceProfile
from harness.targets.base import Target

#: System trust bundles, most common first: Debian/Ubuntu/Raspbian, Amazon Linux/RHEL, OpenWrt/Alpine.
BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
#: SHA-256 of the DER of Amazon Root CA 1, the root of AWS IoT (ATS) and Amazon S3 endpoints. Debian's
#: ca-certificates ships it (/etc/ssl/certs/Amazon_Root_CA_1.pem), so it is required, matched by content
#: rather than file name so any distribution's bundle layout works.
AMAZON_ROOT_CA_1_SHA256 = "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
AMAZON_ROOT_CA_1_FILE = "/etc/ssl/certs/Amazon_Root_CA_1.pem"
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


def certificate_fingerprints(pem_text: str) -> list[str]:
    """SHA-256 (hex) of every certificate in a PEM bundle; unparsable blocks are skipped."""
    out = []
    for body in _PEM.findall(pem_text):
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            continue
        out.append(hashlib.sha256(der).hexdigest())
    return out


@board_check("ca_trust")
def ca_trust(target: Target, profile: DeviceProfile) -> CheckResult:
    """The trust bundle exists, holds certificates, and one of them is Amazon Root CA 1."""
    bundle, text = None, None
    for path in BUNDLES:
        text = target.read_text(path)
        if text is not None:
            bundle = path
            break
    if bundle is None or text is None:
        return verdict(False, f"No system trust bundle found (looked for {', '.join(BUNDLES)}).")
    blocks = text.count("BEGIN CERTIFICATE")
    fingerprints = certificate_fingerprints(text)
    notes = (f"{bundle}: {blocks} 'BEGIN CERTIFICATE' blocks, {len(fingerprints)} parsed; looking for Amazon "
             f"Root CA 1, SHA-256 {AMAZON_ROOT_CA_1_SHA256}")
    if not fingerprints:
        return verdict(False, f"The trust bundle {bundle} holds no certificate.", notes=notes)
    if AMAZON_ROOT_CA_1_SHA256 not in fingerprints:
        target.read_text(AMAZON_ROOT_CA_1_FILE)
        return verdict(False, f"The trust bundle {bundle} holds {len(fingerprints)} certificates but not "
                       "Amazon Root CA 1.", notes=notes)
    pos = fingerprints.index(AMAZON_ROOT_CA_1_SHA256) + 1
    return verdict(True, f"The trust bundle {bundle} holds {len(fingerprints)} certificates, Amazon Root "
                   f"CA 1 among them (number {pos}).", notes=notes)
