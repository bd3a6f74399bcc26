"""Certificate enrolment over EST (RFC 7030): a vehicle gets and renews its own certificate.

* An operator makes a one-time **enrollment token** for a registered vehicle
  (``vehicle enroll-token VIN``); the factory puts it on the TBox. Only its
  SHA-256 is stored; it expires (default 7 days) and works once.
* ``simpleenroll``: the vehicle sends a CSR with HTTP Basic credentials
  ``VIN:token`` and gets a certificate from the issuing CA.
* ``simplereenroll``: a vehicle whose certificate is still valid and not
  revoked (the device API's own check) sends a new CSR over that mTLS
  connection and gets a new certificate; the old one stays valid until it
  expires or is revoked, so a vehicle that loses the answer retries with it.

The CSR rules are the PKI's (``pki.load_csr``); the certificate names the
vehicle the token or the connection belongs to, whatever the CSR asks for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from sqlalchemy import select
from sqlalchemy.orm import Session

from redstone_cloud import pki as pkix
from redstone_cloud.db.models import CertificateAuthority, EnrollmentToken, Vehicle
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import InvalidInput, NotFound, Unauthorized
from redstone_cloud.services import audit, pki


class EnrollRefused(Unauthorized):
    """Missing, unknown, used or expired enrollment credentials (a Basic challenge)."""

    challenge = 'Basic realm="redstone-est"'


TOKEN_TTL = dt.timedelta(days=7)
MAX_TTL = dt.timedelta(days=90)


def new_token(
    session: Session, actor: str, vin: str, ttl: dt.timedelta = TOKEN_TTL
) -> tuple[str, dt.datetime]:
    """A fresh one-time token for ``vin`` (shown once) and when it expires."""
    if not dt.timedelta(minutes=1) <= ttl <= MAX_TTL:
        raise InvalidInput("an enrollment token lives between 1 minute and 90 days")
    vehicle_id = session.scalar(select(Vehicle.id).where(Vehicle.vin == vin))
    if vehicle_id is None:
        raise NotFound(f"unknown VIN {vin}")
    token = secrets.token_urlsafe(24)
    expires = utcnow() + ttl
    session.add(
        EnrollmentToken(vehicle_id=vehicle_id, token_sha256=_digest(token), expires_at=expires)
    )
    session.flush()
    audit.record(session, actor, "est.token", "vehicle", vin, expires_at=expires.isoformat())
    return token, expires


def enroll(session: Session, key_dir: Path, vin: str, token: str, csr_der: bytes) -> bytes:
    """``simpleenroll``: the certificate (certs-only PKCS#7, DER) for the vehicle whose
    unused token this is."""
    row = session.scalar(
        select(EnrollmentToken)
        .join(Vehicle, EnrollmentToken.vehicle_id == Vehicle.id)
        .where(EnrollmentToken.token_sha256 == _digest(token), Vehicle.vin == vin)
    )
    now = utcnow()
    if row is None:
        raise EnrollRefused("enrollment token not recognised for this VIN")
    if row.used_at is not None:
        raise EnrollRefused("enrollment token already used: ask the operator for a new one")
    if row.expires_at < now:
        raise EnrollRefused("enrollment token expired: ask the operator for a new one")
    row.used_at = now
    issued = pki.issue(session, key_dir, f"est:{vin}", vin, _csr_pem(csr_der))
    audit.record(session, f"est:{vin}", "est.enroll", "certificate", issued.serial, vin=vin)
    return certs_only([pkix.cert_from_pem(issued.cert_pem)])


def reenroll(session: Session, key_dir: Path, vin: str, csr_der: bytes) -> bytes:
    """``simplereenroll``: a new certificate (certs-only PKCS#7, DER) for the vehicle of
    the mTLS connection."""
    issued = pki.issue(session, key_dir, f"est:{vin}", vin, _csr_pem(csr_der))
    audit.record(session, f"est:{vin}", "est.reenroll", "certificate", issued.serial, vin=vin)
    return certs_only([pkix.cert_from_pem(issued.cert_pem)])


def cacerts(session: Session) -> bytes:
    """``cacerts``: every CA certificate as a certs-only PKCS#7 (DER)."""
    certs = [
        pkix.cert_from_pem(ca.cert_pem)
        for ca in session.scalars(select(CertificateAuthority).order_by(CertificateAuthority.id))
    ]
    if not certs:
        raise NotFound("no CA yet")
    return certs_only(certs)


def certs_only(certs: list[x509.Certificate]) -> bytes:
    """Certificates as a degenerate (certs-only) PKCS#7 SignedData, DER."""
    return pkcs7.serialize_certificates(certs, Encoding.DER)


def _csr_pem(der: bytes) -> bytes:
    if len(der) > pkix.MAX_CSR_BYTES:
        raise InvalidInput(f"CSR larger than {pkix.MAX_CSR_BYTES} bytes")
    try:
        return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)
    except ValueError as exc:
        raise InvalidInput(f"CSR is not a DER PKCS#10 request: {exc}") from None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
