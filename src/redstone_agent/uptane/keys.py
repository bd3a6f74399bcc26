"""Keys and signers: Ed25519 by default, ECDSA P-256 supported.

Signing goes through securesystemslib's one-method :class:`Signer` interface
(``sign(payload) -> Signature``), so a PKCS#11 token or cloud KMS signer plugs
in wherever a file key does. Private key files are PEM PKCS#8 and must not be
readable by group or others: a leaked offline key defeats the threshold design.

A key file may instead hold one line, a ``pkcs11:`` URI (RFC 7512): the key is
then an ECDSA P-256 key on that token, and signing happens there
(docs/keys.md). Every place that loads a key file takes either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from redstone_agent.uptane.errors import KeyFileError
from redstone_agent.uptane.tufapi import CryptoSigner, Key, Signer, SSlibKey

Algorithm = Literal["ed25519", "ecdsa-p256"]
ALGORITHMS: tuple[Algorithm, ...] = ("ed25519", "ecdsa-p256")

_SCHEMES: dict[Algorithm, str] = {"ed25519": "ed25519", "ecdsa-p256": "ecdsa-sha2-nistp256"}

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Key",
    "Signer",
    "generate_signer",
    "load_signer",
    "public_key_from_dict",
    "public_key_to_dict",
    "save_signer",
    "signer_from_pem",
    "signer_from_uri",
]


def generate_signer(algorithm: Algorithm = "ed25519") -> CryptoSigner:
    """Create a fresh key pair for ``algorithm``."""
    if algorithm == "ed25519":
        return CryptoSigner.generate_ed25519()
    if algorithm == "ecdsa-p256":
        return CryptoSigner.generate_ecdsa()
    raise KeyFileError(f"unsupported key algorithm {algorithm!r} (use one of {ALGORITHMS})")


def signer_from_pem(pem: bytes, source: str = "key") -> CryptoSigner:
    """Build a signer from PEM PKCS#8 private key bytes (Ed25519 or ECDSA P-256)."""
    try:
        private = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{source}: not an unencrypted PEM private key ({exc})") from exc
    if isinstance(private, Ed25519PrivateKey):
        scheme = _SCHEMES["ed25519"]
    elif isinstance(private, EllipticCurvePrivateKey) and private.curve.name == "secp256r1":
        scheme = _SCHEMES["ecdsa-p256"]
    else:
        raise KeyFileError(f"{source}: only Ed25519 and ECDSA P-256 keys are supported")
    public = SSlibKey.from_crypto(private.public_key(), scheme=scheme)
    return CryptoSigner(private, public)


def load_signer(path: Path) -> CryptoSigner:
    """Read a private key file, refusing one that group or others can read or write."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: permissions {stat.filemode(mode)} are too open; run chmod 600 {path}"
        )
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror})") from exc
    if pem.startswith(b"pkcs11:"):
        return signer_from_uri(pem.decode("utf-8", "replace").strip(), str(path))
    return signer_from_pem(pem, str(path))


class TokenSigner(CryptoSigner):
    """A signer whose key is on a PKCS#11 token; saving it writes its URI, not a key."""

    uri_text: str = ""


def signer_from_uri(text: str, source: str = "key") -> CryptoSigner:
    """A signer whose Ed25519 or ECDSA P-256 key stays on the PKCS#11 token ``text`` names."""
    from redstone_agent.pkcs11 import token, uri
    from redstone_agent.pkcs11.eckey import TokenEcPrivateKey
    from redstone_agent.pkcs11.edkey import TokenEd25519PrivateKey

    try:
        held = token.TokenKey(uri.parse(text))
    except (uri.UriError, token.TokenError) as exc:
        raise KeyFileError(f"{source}: {exc}") from None
    private: TokenEd25519PrivateKey | TokenEcPrivateKey
    if held.algorithm == token.ED25519:
        private = TokenEd25519PrivateKey(held)
        scheme = _SCHEMES["ed25519"]
    else:
        private = TokenEcPrivateKey(held)
        if private.curve.name != "secp256r1":
            held.close()
            raise KeyFileError(f"{source}: the token key is on {private.curve.name}, not P-256")
        scheme = _SCHEMES["ecdsa-p256"]
    public = SSlibKey.from_crypto(private.public_key(), scheme=scheme)
    signer = TokenSigner(private, public)
    signer.uri_text = text
    return signer


def save_signer(signer: CryptoSigner, path: Path) -> None:
    """Write the private key as PEM, created with mode 0600 (never briefly world-readable);
    for a token key, its URI (the key itself cannot leave the token)."""
    data = (
        (signer.uri_text + "\n").encode()
        if isinstance(signer, TokenSigner)
        else signer.private_bytes
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def public_key_to_dict(key: Key) -> dict[str, Any]:
    """Serialise a public key with its keyid (the form a backend stores per ECU)."""
    return {"keyid": key.keyid, **key.to_dict()}


def public_key_from_dict(data: dict[str, Any]) -> Key:
    """Inverse of :func:`public_key_to_dict`; rejects malformed input with one line."""
    try:
        fields = dict(data)
        keyid = fields.pop("keyid")
        return Key.from_dict(str(keyid), fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyFileError(f"malformed public key: {exc!r}") from exc
