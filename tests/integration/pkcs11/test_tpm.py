"""``redstone_agent.pkcs11`` on a real software TPM: swtpm with tpm2-pkcs11 (tests/swtpm.py).

The same calls as on SoftHSM2: a key made on the TPM never leaves it, an X.509
certificate and Uptane metadata signed there verify with the public key alone, a
preference for Ed25519 falls back to P-256 (a TPM has no EdDSA), a wrong PIN and a
TPM that went away are one line each. At most two keys are held open at a time:
swtpm has no resource manager in front of it (docs/keys.md §9).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets

from redstone_agent.pkcs11 import token, uri
from redstone_agent.pkcs11.eckey import NotExportable, TokenEcPrivateKey
from redstone_agent.uptane import keys
from tests.swtpm import (
    MODULE,
    PIN,
    SwTpm,
    make_tokens,
    require_swtpm,
    start_emulator,
    tpm_env,
)


def test_a_p256_key_made_on_the_tpm_is_sensitive_and_never_extractable(swtpm: SwTpm) -> None:
    held = token.generate(uri.parse(swtpm.uri("tpm-a", "ca-key")))
    try:
        assert held.algorithm == token.P256
        assert held.attribute("SENSITIVE") is True
        assert held.attribute("EXTRACTABLE") is False
        assert held.attribute("NEVER_EXTRACTABLE") is True
        with pytest.raises(token.TokenError, match=r"tpm-a.*AttributeTypeInvalid"):
            held.attribute("VALUE")  # tpm2-pkcs11 keeps no CKA_VALUE: the TPM holds it
        with pytest.raises(NotExportable, match="never leaves the token"):
            TokenEcPrivateKey(held).private_numbers()
    finally:
        held.close()


def test_a_ca_certificate_signed_on_the_tpm_verifies_with_its_public_key(swtpm: SwTpm) -> None:
    held = token.generate(uri.parse(swtpm.uri("tpm-a", "self-signed-ca")))
    try:
        key = TokenEcPrivateKey(held)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Redstone TPM test CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert.verify_directly_issued_by(cert)  # raises if the TPM's signature is wrong
        assert cert.public_key() == key.public_key()
    finally:
        held.close()


def test_ed25519_falls_back_to_p256_on_the_tpm_and_signs_uptane_metadata_from_a_key_file(
    swtpm: SwTpm, tmp_path: Path
) -> None:
    text = swtpm.uri("tpm-a", "director-targets")
    token.generate(uri.parse(text), prefer=token.ED25519).close()
    key_file = tmp_path / "targets.key"
    key_file.write_text(text + "\n")
    key_file.chmod(0o600)
    signer = keys.load_signer(key_file)
    assert isinstance(signer, keys.TokenSigner)
    private = signer._private_key
    assert isinstance(private, TokenEcPrivateKey)
    try:
        assert private.token_key.algorithm == token.P256  # the TPM has no CKM_EDDSA
        assert signer.public_key.scheme == "ecdsa-sha2-nistp256"
        metadata = Metadata(Targets(version=3))
        metadata.sign(signer)
        root = Root()
        root.add_key(signer.public_key, Targets.type)
        # raises unless the threshold of valid signatures is met, as on the vehicle
        root.verify_delegate(Targets.type, metadata.signed_bytes, metadata.signatures)
        metadata.signed.version = 4  # and a changed payload fails
        with pytest.raises(UnsignedMetadataError):
            root.verify_delegate(Targets.type, metadata.signed_bytes, metadata.signatures)
    finally:
        private.token_key.close()


def test_a_wrong_pin_on_the_tpm_is_one_line_naming_the_token(swtpm: SwTpm, tmp_path: Path) -> None:
    """One wrong PIN only: each one counts towards the TPM's dictionary-attack lockout,
    which locks every token on the TPM after three (docs/keys.md §9)."""
    wrong_pin = tmp_path / "wrong.pin"
    wrong_pin.write_text("0000\n")
    text = swtpm.uri("tpm-b", "pin-checked")
    with pytest.raises(token.TokenError) as refused:
        token.TokenKey(
            uri.parse(
                swtpm.uri("tpm-b", "pin-checked", pin=False) + f"&pin-source=file:{wrong_pin}"
            )
        )
    message = str(refused.value)
    assert "\n" not in message
    assert "token=tpm-b" in message
    assert "wrong PIN" in message
    assert "0000" not in message
    token.generate(uri.parse(text)).close()  # the right PIN still logs in


_STOPPED_MID_USE = r"""
import sys
from redstone_agent.pkcs11 import token, uri
key = token.generate(uri.parse(sys.argv[1]))
key.sign_digest(bytes(32))
print("signed", flush=True)
sys.stdin.readline()  # the test stops swtpm meanwhile
for _ in range(2):  # the signature that meets the closed socket, then a fresh login
    try:
        key.sign_digest(bytes(32))
    except token.TokenError as exc:
        print(exc, flush=True)
    else:
        print("signed with the TPM stopped", flush=True)
sys.stdin.readline()  # the test starts the same TPM again meanwhile
key.sign_digest(bytes(32))
print("signed again", flush=True)
"""


@pytest.mark.timeout(120)
def test_a_tpm_stopped_mid_use_gives_one_line_errors_not_a_hang(tmp_path: Path) -> None:
    """Its own swtpm, and a process of its own (tpm2-pkcs11 reads the TCTI once per
    process). Measured: the swtpm TCTI fails at once on the closed socket; tpm2-pkcs11
    says CKR_GENERAL_ERROR, and keeps saying it until the module is finalised and
    initialised again, which the next use after the failure does: once the TPM is back,
    the same key signs again without a restart of the process."""
    require_swtpm()
    emulator = start_emulator(tmp_path / "tpm")
    try:
        store = tmp_path / "store"
        make_tokens(emulator, store, ("tpm-stops",))
        pin_file = tmp_path / "user.pin"
        pin_file.write_text(PIN + "\n")
        text = f"pkcs11:token=tpm-stops;object=k?module-path={MODULE}&pin-source=file:{pin_file}"
        child = subprocess.Popen(
            [sys.executable, "-c", _STOPPED_MID_USE, text],
            env={**os.environ, **tpm_env(emulator, store)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "signed\n"
        emulator.stop()
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        during, after = child.stdout.readline(), child.stdout.readline()
        emulator = start_emulator(tmp_path / "tpm", emulator.port)  # the TPM is back
        out, err = child.communicate("go\n", timeout=60)
    finally:
        emulator.stop()
    assert child.returncode == 0, err
    assert out == "signed again\n"  # the module was started again, the key found again
    assert during.startswith("pkcs11:token=tpm-stops;object=k: GeneralError")
    assert "is the TPM or HSM reachable?" in during
    # The next use starts the module again, which cannot reach the TPM yet.
    assert after.startswith("pkcs11:token=tpm-stops;object=k: PKCS#11 module ")
    assert "cannot start: GeneralError" in after
    assert "Traceback" not in err
