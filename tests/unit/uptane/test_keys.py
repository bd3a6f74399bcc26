"""Key generation, PEM loading and the file-permission guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.uptane.errors import KeyFileError
from redstone_agent.uptane.keys import (
    ALGORITHMS,
    generate_signer,
    load_signer,
    public_key_from_dict,
    public_key_to_dict,
    save_signer,
    signer_from_pem,
)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_saved_key_loads_with_same_keyid_and_signs(tmp_path: Path, algorithm: str) -> None:
    signer = generate_signer(algorithm)  # type: ignore[arg-type]
    path = tmp_path / "k.pem"
    save_signer(signer, path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_signer(path)
    assert loaded.public_key.keyid == signer.public_key.keyid
    signature = loaded.sign(b"payload")
    signer.public_key.verify_signature(signature, b"payload")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.pem"
    save_signer(generate_signer(), path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="too open; run chmod 600"):
        load_signer(path)


def test_missing_key_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load_signer(tmp_path / "absent.pem")


def test_save_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    save_signer(generate_signer(), path)
    with pytest.raises(FileExistsError):
        save_signer(generate_signer(), path)


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"not a key", "not an unencrypted PEM private key"),
        (b"", "not an unencrypted PEM private key"),
    ],
)
def test_garbage_pem_is_refused(pem: bytes, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        signer_from_pem(pem)


def test_unsupported_curve_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyFileError, match="only Ed25519 and ECDSA P-256"):
        signer_from_pem(pem)


def test_public_key_dict_round_trip_and_garbage() -> None:
    key = generate_signer("ecdsa-p256").public_key
    assert public_key_from_dict(public_key_to_dict(key)) == key
    with pytest.raises(KeyFileError, match="malformed public key"):
        public_key_from_dict({"keytype": "ed25519"})
