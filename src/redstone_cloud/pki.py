"""X.509 for device identities: OEM CA / intermediate, CSR issuance, CRLs.

Pure crypto on the ``cryptography`` package; where keys and certificates are
kept is the service layer's business. CA keys are ECDSA P-256; device keys may
be P-256 or Ed25519 (whatever the CSR carries). A device certificate's subject
is set by us (CN = VIN), never copied from the CSR, so a device cannot ask for
someone else's identity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from redstone_cloud.errors import InvalidInput

CaKey = ec.EllipticCurvePrivateKey
MAX_CSR_BYTES = 16 * 1024


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_ca_key() -> CaKey:
    """A fresh P-256 CA key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: CaKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file is 0600 on the server's disk)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(data: bytes) -> CaKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput("CA key is not an ECDSA key")
    return key


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: CertificatePublicKeyTypes, days: int
) -> x509.CertificateBuilder:
    """What every certificate we make shares: names, key, random serial, validity."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _ca_builder(
    subject: x509.Name, issuer: x509.Name, key: CaKey, days: int, path_len: int | None
) -> x509.CertificateBuilder:
    return (
        _builder(subject, issuer, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Redstone OTA"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_root_ca(name: str, key: CaKey, days: int = 3650) -> x509.Certificate:
    """A self-signed root CA certificate."""
    subject = _name(name)
    return _ca_builder(subject, subject, key, days, path_len=1).sign(key, hashes.SHA256())


def create_intermediate(
    name: str, key: CaKey, parent: x509.Certificate, parent_key: CaKey, days: int = 1825
) -> x509.Certificate:
    """An intermediate CA signed by ``parent`` that may only issue end-entity certificates."""
    builder = _ca_builder(_name(name), parent.subject, key, days, path_len=0)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(parent_key.public_key()), critical=False
    )
    return builder.sign(parent_key, hashes.SHA256())


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """Parse and check a CSR: size-capped, self-signature valid, supported key type."""
    if len(pem) > MAX_CSR_BYTES:
        raise InvalidInput(f"CSR larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise InvalidInput(f"CSR is not a PEM certificate request: {exc}") from exc
    try:
        valid = csr.is_signature_valid
    except InvalidSignature:
        valid = False
    if not valid:
        raise InvalidInput("CSR signature does not verify: the requester does not hold the key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise InvalidInput("CSR key must be ECDSA or Ed25519")
    return csr


def issue_device_certificate(
    csr: x509.CertificateSigningRequest,
    vin: str,
    issuer: x509.Certificate,
    issuer_key: CaKey,
    days: int = 825,
) -> x509.Certificate:
    """A TLS client certificate for vehicle ``vin`` carrying the CSR's public key."""
    public_key = csr.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return (
        _builder(_name(vin), issuer.subject, public_key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:redstone:vin:{vin}")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def issue_server_certificate(
    hostnames: list[str], issuer: x509.Certificate, issuer_key: CaKey, key: CaKey, days: int = 825
) -> x509.Certificate:
    """A TLS server certificate for the backend itself (IP addresses allowed as names)."""
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return (
        _builder(_name(hostnames[0]), issuer.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def build_crl(
    issuer: x509.Certificate, issuer_key: CaKey, revoked: list[tuple[int, dt.datetime]]
) -> x509.CertificateRevocationList:
    """A CRL naming ``(serial, revoked_at)`` pairs, valid for a day (for TLS terminators)."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(issuer_key, hashes.SHA256())


def fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate's DER encoding, lowercase hex: how the API finds a device."""
    return hashlib.sha256(der).hexdigest()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_from_pem(pem: str | bytes) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidInput(f"not a PEM certificate: {exc}") from exc


def der_fingerprint(cert: x509.Certificate) -> str:
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))
