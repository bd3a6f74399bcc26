"""The PKI's certificates verify as a chain; bad CSRs are refused."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ClientVerifier, PolicyBuilder, Store, VerificationError

from redstone_cloud import pki
from redstone_cloud.errors import InvalidInput
from redstone_cloud.services import pki as services_pki


def csr_for(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey,
) -> bytes:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ADMIN")]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def verifier(root: x509.Certificate) -> ClientVerifier:
    return (
        PolicyBuilder().store(Store([root])).time(dt.datetime.now(dt.UTC)).build_client_verifier()
    )


def test_device_certificate_chains_to_root_through_intermediate() -> None:
    root_key, mid_key = pki.new_ca_key(), pki.new_ca_key()
    root = pki.create_root_ca("root", root_key)
    mid = pki.create_intermediate("devices", mid_key, root, root_key)
    for device_key in (
        ec.generate_private_key(ec.SECP256R1()),
        ed25519.Ed25519PrivateKey.generate(),
    ):
        cert = pki.issue_device_certificate(
            pki.load_csr(csr_for(device_key)), "VIN12345678901234", mid, mid_key
        )
        assert (
            cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "VIN12345678901234"
        )
        verified = verifier(root).verify(cert, [mid])
        assert verified.chain[-1] == root
    other_key = pki.new_ca_key()
    other = pki.create_root_ca("other", other_key)
    stray = pki.issue_device_certificate(
        pki.load_csr(csr_for(ec.generate_private_key(ec.SECP256R1()))), "X", other, other_key
    )
    with pytest.raises(VerificationError):
        verifier(root).verify(stray, [mid])


def test_bad_csrs_are_refused() -> None:
    good = csr_for(ec.generate_private_key(ec.SECP256R1()))
    broken = bytearray(good)
    body_start = good.index(b"\n") + 40
    broken[body_start] = ord("A") if broken[body_start] != ord("A") else ord("B")
    cases = [
        (b"not pem", "not a PEM"),
        (bytes(broken), r"not a PEM certificate request|CSR signature does not verify"),
        (b"x" * 20000, "larger than"),
        (csr_for(rsa.generate_private_key(65537, 2048)), "ECDSA or Ed25519"),
    ]
    for data, words in cases:
        with pytest.raises(InvalidInput, match=words):
            pki.load_csr(data)


def test_crl_lists_revoked_serials() -> None:
    key = pki.new_ca_key()
    ca = pki.create_root_ca("root", key)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    crl = pki.build_crl(ca, key, [(1234, when)])
    assert crl.is_signature_valid(key.public_key())
    revoked = crl.get_revoked_certificate_by_serial_number(1234)
    assert revoked is not None and revoked.revocation_date_utc == when


def test_fingerprint_is_sha256_of_der() -> None:
    key = pki.new_ca_key()
    ca = pki.create_root_ca("root", key)
    assert pki.der_fingerprint(ca) == ca.fingerprint(hashes.SHA256()).hex()
    assert pki.key_from_pem(pki.key_to_pem(key)).private_numbers() == key.private_numbers()


@pytest.mark.parametrize(
    "printed",
    ["0A3129AC71DAF450", "a3129ac71daf450", "0a:31:29:ac:71:da:f4:50", "0xA3129AC71DAF450"],
)
def test_serial_as_tools_print_it_finds_the_stored_one(printed: str) -> None:
    assert services_pki.serial_key(printed) == "a3129ac71daf450"


def test_serial_that_is_not_hex_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="'VIN123' is not hexadecimal"):
        services_pki.serial_key("VIN123")
