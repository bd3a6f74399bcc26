"""The vehicle's side of EST (RFC 7030, docs/keys.md §6): its key, its CSR, its certificate.

Pure parts: a fresh P-256 key and a CSR naming the VIN; the certificate for
that key picked out of the server's certs-only PKCS#7; whether a certificate
is due for renewal. File part: :func:`install_pair` replaces the key and the
certificate so that a power cut at any instant leaves a matching pair
(:func:`recover_pair` finishes a swap that was cut short). The exchanges
themselves are ``DeviceClient.renew_certificate`` and :func:`enroll`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from redstone_agent.cloud.errors import CloudProtocolError

SIMPLEENROLL = "/.well-known/est/simpleenroll"
SIMPLEREENROLL = "/.well-known/est/simplereenroll"
CSR_TYPE = "application/pkcs10"
MAX_ANSWER_BYTES = 64 * 1024
NEXT = ".next"
"""Suffix of the new key and certificate while they replace the old ones."""


def csr_for(vin: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A CSR naming ``vin`` signed by ``key`` (a file key or one on a token), as the base64
    DER body EST wants."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vin)]))
        .sign(key, hashes.SHA256())
    )
    return base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))


def new_key_and_csr(vin: str) -> tuple[bytes, bytes]:
    """A fresh P-256 key (PEM PKCS#8) and a CSR for it naming ``vin`` (base64 DER body)."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr_for(vin, key)


def public_of(key_pem: bytes) -> ec.EllipticCurvePublicKey:
    public = serialization.load_pem_private_key(key_pem, None).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def certificate_for(where: str, body: bytes, ours: ec.EllipticCurvePublicKey) -> bytes:
    """The PEM certificate in a base64 certs-only PKCS#7 whose public key is ``ours``."""
    try:
        certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(b"".join(body.split())))
    except (binascii.Error, ValueError) as exc:
        raise CloudProtocolError(where, f"answer is not a base64 PKCS#7: {exc}") from None
    for cert in certs:
        if cert.public_key() == ours:
            return cert.public_bytes(serialization.Encoding.PEM)
    raise CloudProtocolError(where, "answer holds no certificate for the key we sent")


def serial_of(cert_pem: bytes) -> str:
    return format(x509.load_pem_x509_certificate(cert_pem).serial_number, "x")


def renewal_due(cert_pem: bytes, now: dt.datetime, before: dt.timedelta) -> bool:
    """Whether to renew: less than ``before`` is left, or a third of the certificate's
    life if that is shorter (so a short-lived certificate is not renewed at once)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    left = cert.not_valid_after_utc - now
    return left < min(before, life / 3)


def install_pair(key_path: Path, cert_path: Path, key_pem: bytes, cert_pem: bytes) -> None:
    """Replace key and certificate; after a power cut :func:`recover_pair` completes it.

    Both are written to ``.next`` files first (key 0600) and synced; then the key
    is renamed over the old one, then the certificate. Between the two renames
    the key is new and the certificate old: recovery sees ``cert.next`` and
    finishes the second rename.
    """
    key_next, cert_next = _next(key_path), _next(cert_path)
    _write(key_next, key_pem, 0o600)
    _write(cert_next, cert_pem, 0o644)
    key_next.replace(key_path)
    cert_next.replace(cert_path)
    _sync_dir(cert_path.parent)
    if key_path.parent != cert_path.parent:
        _sync_dir(key_path.parent)


def recover_pair(key_path: Path, cert_path: Path) -> str:
    """Finish or undo a swap a power cut interrupted; what was done, for the log."""
    key_next, cert_next = _next(key_path), _next(cert_path)
    if key_next.exists():  # cut before the key's rename: the old pair is whole
        key_next.unlink()
        cert_next.unlink(missing_ok=True)
        return "discarded an unfinished new key and certificate"
    if cert_next.exists():  # cut between the renames: the key is new already
        cert_next.replace(cert_path)
        return "finished installing a renewed certificate"
    return ""


def _next(path: Path) -> Path:
    return path.with_name(path.name + NEXT)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
