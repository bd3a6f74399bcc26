"""``redstone_agent.pkcs11`` on a real SoftHSM2 token: what a process shares per token,
and what it must not leave behind for the rest of the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redstone_agent.pkcs11 import token, uri
from redstone_agent.pkcs11.eckey import NotExportable, TokenEcPrivateKey
from redstone_agent.pkcs11.edkey import TokenEd25519PrivateKey
from tests.softhsm import SoftHsm


def test_a_second_key_with_a_wrong_pin_is_refused_though_the_process_is_logged_in(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    right = uri.parse(softhsm.uri("spare", "login-shared"))
    token.generate(right).close()
    held = token.TokenKey(right)  # logs the process in to the token
    try:
        wrong_pin = tmp_path / "wrong.pin"
        wrong_pin.write_text("0000\n")
        wrong = uri.parse(
            softhsm.uri("spare", "login-shared", pin=False) + f"&pin-source=file:{wrong_pin}"
        )
        with pytest.raises(token.TokenError, match="wrong PIN"):
            token.TokenKey(wrong)
        assert len(held.sign_digest(b"\x01" * 32)) > 64  # the first key still signs
    finally:
        held.close()


def test_token_calls_leave_no_openssl_errors_for_pythons_ssl(softhsm: SoftHsm) -> None:
    """SoftHSM leaves errors on the thread's OpenSSL queue when it starts; Python's ssl
    would report them on its next read (a stale 'no such engine' broke HTTPS after
    signing). A fresh process, so that the module starts inside the test."""
    probe = (
        "import ctypes, sys\n"
        "from redstone_agent.pkcs11 import token, uri\n"
        "crypto = ctypes.CDLL('libcrypto.so.3')\n"
        "crypto.ERR_peek_error.restype = ctypes.c_ulong\n"
        "key = token.generate(uri.parse(sys.argv[1]))\n"
        "key.sign_digest(bytes(32))\n"
        "key.close()\n"
        "print(crypto.ERR_peek_error())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, softhsm.uri("spare", "error-queue")],
        env=softhsm.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "0"


def test_an_ed25519_token_key_signs_as_cryptography_verifies_and_never_exports(
    softhsm: SoftHsm,
) -> None:
    held = token.generate(uri.parse(softhsm.uri("spare", "ed-ecu")), prefer=token.ED25519)
    try:
        assert held.algorithm == token.ED25519
        key = TokenEd25519PrivateKey(held)
        key.public_key().verify(key.sign(b"manifest"), b"manifest")  # raises if wrong
        with pytest.raises(NotExportable, match="never leaves the token"):
            key.private_bytes_raw()
        with pytest.raises(token.TokenError, match="is ed25519, not ecdsa-p256"):
            held.sign_digest(bytes(32))
        with pytest.raises(token.TokenError, match="is ed25519, not P-256"):
            TokenEcPrivateKey(held)  # e.g. as a CA key or the Master's tunnel-key
    finally:
        held.close()
