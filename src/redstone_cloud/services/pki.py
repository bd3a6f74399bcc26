"""The OEM PKI as the backend runs it: CAs in the database, their keys on disk (0600)
or on a PKCS#11 token (docs/keys.md)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from redstone_cloud import pki
from redstone_cloud.db.models import CertificateAuthority, DeviceCertificate, Vehicle
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import Conflict, InvalidInput, NotFound
from redstone_cloud.services import audit

_token_keys: dict[str, pki.CaKey] = {}
"""Token keys by URI: a key's login session is kept for the process's life."""
_token_keys_lock = threading.Lock()


def _key_path(key_dir: Path, name: str) -> Path:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput(f"CA name {name!r}: use letters, digits, '-' and '_'")
    return key_dir / f"ca-{name}.key"


def _save_key(path: Path, key: pki.CaKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pki.key_to_pem(key))


def _load_key(key_dir: Path, ca: CertificateAuthority) -> pki.CaKey:
    if ca.key_uri:
        return _token_key(ca.key_uri, create=False)
    path = _key_path(key_dir, ca.name)
    try:
        return pki.key_from_pem(path.read_bytes())
    except FileNotFoundError as exc:
        raise NotFound(f"private key of CA {ca.name!r} is not in {key_dir}") from exc


def _token_key(uri_text: str, *, create: bool) -> pki.CaKey:
    """The token key ``uri_text`` names (made on the token when ``create`` and absent);
    a token error is the caller's one-line InvalidInput."""
    from redstone_agent.pkcs11 import token, uri
    from redstone_agent.pkcs11.eckey import TokenEcPrivateKey

    with _token_keys_lock:
        if uri_text in _token_keys:
            return _token_keys[uri_text]
        try:
            parsed = uri.parse(uri_text)
            found = token.open_or_generate(parsed) if create else token.TokenKey(parsed)
            key = TokenEcPrivateKey(found)
        except (uri.UriError, token.TokenError) as exc:
            raise InvalidInput(str(exc)) from None
        _token_keys[uri_text] = key
        return key


def key_source(ca: CertificateAuthority) -> str:
    """Where the CA's key is, as the audit trail records it (no PIN, no module path)."""
    if not ca.key_uri:
        return f"file ca-{ca.name}.key"
    return ca.key_uri.split("?", 1)[0]


def create_ca(
    session: Session,
    key_dir: Path,
    actor: str,
    name: str,
    parent: str | None = None,
    *,
    key_uri: str | None = None,
) -> CertificateAuthority:
    """A root CA (no parent) or an intermediate; the newest one becomes the issuing CA.

    Its key is a new 0600 file in ``key_dir``, or with ``key_uri`` the key that
    ``pkcs11:`` URI names on a token (made there, never extractable, if absent)."""
    if session.scalar(select(CertificateAuthority.id).where(CertificateAuthority.name == name)):
        raise Conflict(f"CA {name!r} already exists")
    path = _key_path(key_dir, name)
    if key_uri is None and path.exists():
        raise Conflict(f"{path} exists: refusing to overwrite a CA key")
    parent_row = get_ca(session, parent) if parent is not None else None
    key = _token_key(key_uri, create=True) if key_uri is not None else pki.new_ca_key()
    if parent_row is None:
        cert = pki.create_root_ca(name, key)
    else:
        parent_cert = pki.cert_from_pem(parent_row.cert_pem)
        cert = pki.create_intermediate(name, key, parent_cert, _load_key(key_dir, parent_row))
    if key_uri is None:
        _save_key(path, key)
    for other in session.scalars(select(CertificateAuthority)):
        other.issuing = False
    ca = CertificateAuthority(
        name=name,
        cert_pem=pki.cert_pem(cert),
        parent_id=parent_row.id if parent_row else None,
        issuing=True,
        key_uri=key_uri,
    )
    session.add(ca)
    session.flush()
    audit.record(
        session,
        actor,
        "pki.create_ca",
        "ca",
        name,
        parent=parent,
        key=key_source(ca),
        signed_by=key_source(parent_row) if parent_row else key_source(ca),
    )
    return ca


def get_ca(session: Session, name: str) -> CertificateAuthority:
    ca = session.scalar(select(CertificateAuthority).where(CertificateAuthority.name == name))
    if ca is None:
        raise NotFound(f"no CA named {name!r}")
    return ca


def issuing_ca(session: Session) -> CertificateAuthority:
    ca = session.scalar(select(CertificateAuthority).where(CertificateAuthority.issuing))
    if ca is None:
        raise NotFound("no CA yet: run 'redstone-cloud pki init-ca NAME' first")
    return ca


def ca_bundle(session: Session) -> str:
    """Every CA certificate, PEM-concatenated: what TLS trusts for client certificates."""
    return "".join(ca.cert_pem for ca in session.scalars(select(CertificateAuthority)))


def issue(
    session: Session, key_dir: Path, actor: str, vin: str, csr_pem: bytes, *, days: int = 825
) -> DeviceCertificate:
    """A client certificate for ``vin`` from its CSR, signed by the issuing CA."""
    vehicle_id = session.scalar(select(Vehicle.id).where(Vehicle.vin == vin))
    if vehicle_id is None:
        raise NotFound(f"unknown VIN {vin}")
    if not 1 <= days <= 3650:
        raise InvalidInput("certificate validity must be 1..3650 days")
    csr = pki.load_csr(csr_pem)
    ca = issuing_ca(session)
    cert = pki.issue_device_certificate(
        csr, vin, pki.cert_from_pem(ca.cert_pem), _load_key(key_dir, ca), days
    )
    row = DeviceCertificate(
        serial=format(cert.serial_number, "x"),
        fingerprint=pki.der_fingerprint(cert),
        vehicle_id=vehicle_id,
        issuer_id=ca.id,
        cert_pem=pki.cert_pem(cert),
        not_after=cert.not_valid_after_utc,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "pki.issue",
        "certificate",
        row.serial,
        vin=vin,
        issuer=ca.name,
        signed_by=key_source(ca),
    )
    return row


def serial_key(serial: str) -> str:
    """A certificate serial as stored: lower-case hex without leading zeros. Accepts what
    tools print: ``openssl x509 -serial`` pads to whole bytes (``0A31...``), others
    separate bytes with colons or prefix ``0x``."""
    digits = serial.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return format(int(digits, 16), "x")
    except ValueError:
        raise InvalidInput(f"certificate serial {serial!r} is not hexadecimal") from None


def revoke(session: Session, actor: str, serial: str, reason: str = "") -> DeviceCertificate:
    """Revoke a device certificate; the device API refuses it from the next request on."""
    row = session.scalar(
        select(DeviceCertificate).where(DeviceCertificate.serial == serial_key(serial))
    )
    if row is None:
        raise NotFound(f"no device certificate with serial {serial}")
    if row.revoked_at is not None:
        raise Conflict(f"certificate {serial} was already revoked")
    row.revoked_at = utcnow()
    row.revocation_reason = reason[:64]
    audit.record(session, actor, "pki.revoke", "certificate", row.serial, reason=reason)
    return row


def certificates_of(session: Session, vin: str) -> list[DeviceCertificate]:
    stmt = (
        select(DeviceCertificate)
        .join(Vehicle)
        .where(Vehicle.vin == vin)
        .order_by(DeviceCertificate.id)
    )
    return list(session.scalars(stmt))


def crl(session: Session, key_dir: Path, name: str) -> bytes:
    """The CA's current CRL (PEM) for TLS terminators that check revocation themselves."""
    ca = get_ca(session, name)
    revoked = [
        (int(row.serial, 16), row.revoked_at)
        for row in session.scalars(
            select(DeviceCertificate).where(
                DeviceCertificate.issuer_id == ca.id, DeviceCertificate.revoked_at.is_not(None)
            )
        )
        if row.revoked_at is not None
    ]
    crl_obj = pki.build_crl(pki.cert_from_pem(ca.cert_pem), _load_key(key_dir, ca), revoked)
    return crl_obj.public_bytes(Encoding.PEM)


def server_certificate(
    session: Session, key_dir: Path, hostnames: list[str]
) -> tuple[x509.Certificate, pki.CaKey]:
    """A TLS server certificate from the issuing CA (for ``serve`` and tests)."""
    ca = issuing_ca(session)
    key = pki.new_ca_key()
    cert = pki.issue_server_certificate(
        hostnames, pki.cert_from_pem(ca.cert_pem), _load_key(key_dir, ca), key
    )
    return cert, key
