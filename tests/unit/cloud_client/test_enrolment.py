"""EST's pure parts on the vehicle: the certificate picked for our key, when to renew,
and a key/certificate swap that a power cut at any step leaves as a matching pair."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from redstone_agent.cloud import enrolment
from redstone_agent.cloud.errors import CloudProtocolError

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def cert_for(key_pem: bytes, days: int = 825, start: dt.datetime = NOW) -> x509.Certificate:
    public = serialization.load_pem_private_key(key_pem, None).public_key()
    ca = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .sign(ca, hashes.SHA256())
    )


def answer(*certs: x509.Certificate) -> bytes:
    return base64.encodebytes(pkcs7.serialize_certificates(list(certs), serialization.Encoding.DER))


def test_the_csr_names_the_vin_and_the_answer_gives_back_our_certificate() -> None:
    key_pem, body = enrolment.new_key_and_csr("RSTEST00000000001")
    csr = x509.load_der_x509_csr(base64.b64decode(body))
    assert csr.is_signature_valid and "RSTEST00000000001" in csr.subject.rfc4514_string()
    other_key, _ = enrolment.new_key_and_csr("RSTEST00000000001")
    ours = cert_for(key_pem)
    public = enrolment.public_of(key_pem)
    pem = enrolment.certificate_for("EST", answer(cert_for(other_key), ours), public)
    assert x509.load_pem_x509_certificate(pem) == ours
    with pytest.raises(CloudProtocolError, match="no certificate for the key we sent"):
        enrolment.certificate_for("EST", answer(cert_for(other_key)), public)
    with pytest.raises(CloudProtocolError, match="not a base64 PKCS#7"):
        enrolment.certificate_for("EST", b"<html>", public)


def test_renewal_is_due_within_the_margin_or_the_last_third_of_life() -> None:
    key_pem, _ = enrolment.new_key_and_csr("RSTEST00000000001")
    long = cert_for(key_pem, days=825).public_bytes(serialization.Encoding.PEM)
    month = dt.timedelta(days=30)
    assert not enrolment.renewal_due(long, NOW + dt.timedelta(days=700), month)
    assert enrolment.renewal_due(long, NOW + dt.timedelta(days=800), month)
    short = cert_for(key_pem, days=30).public_bytes(serialization.Encoding.PEM)
    assert not enrolment.renewal_due(short, NOW + dt.timedelta(days=15), month)
    assert enrolment.renewal_due(short, NOW + dt.timedelta(days=21), month)


def pair(tmp_path: Path, tag: str) -> tuple[bytes, bytes]:
    key_pem, _ = enrolment.new_key_and_csr("RSTEST00000000001")
    cert = cert_for(key_pem).public_bytes(serialization.Encoding.PEM)
    return key_pem, cert


def matches(key: Path, cert: Path) -> bool:
    public = serialization.load_pem_private_key(key.read_bytes(), None).public_key()
    return x509.load_pem_x509_certificate(cert.read_bytes()).public_key() == public


@pytest.mark.parametrize("cut_after", ["key.next", "cert.next", "key renamed"])
def test_a_power_cut_at_every_step_of_the_swap_leaves_a_matching_pair(
    tmp_path: Path, cut_after: str
) -> None:
    key, cert = tmp_path / "tbox.key", tmp_path / "tbox.pem"
    old_key, old_cert = pair(tmp_path, "old")
    enrolment.install_pair(key, cert, old_key, old_cert)
    new_key, new_cert = pair(tmp_path, "new")
    key_next, cert_next = tmp_path / "tbox.key.next", tmp_path / "tbox.pem.next"
    key_next.write_bytes(new_key)
    if cut_after != "key.next":
        cert_next.write_bytes(new_cert)
    if cut_after == "key renamed":
        key_next.replace(key)

    done = enrolment.recover_pair(key, cert)
    assert done and matches(key, cert)
    expected = new_cert if cut_after == "key renamed" else old_cert
    assert cert.read_bytes() == expected
    assert not key_next.exists() and not cert_next.exists()
    assert enrolment.recover_pair(key, cert) == ""


def test_an_installed_pair_is_whole_and_its_key_private(tmp_path: Path) -> None:
    key, cert = tmp_path / "k", tmp_path / "c"
    key_pem, cert_pem = pair(tmp_path, "x")
    enrolment.install_pair(key, cert, key_pem, cert_pem)
    assert matches(key, cert) and key.stat().st_mode & 0o777 == 0o600
