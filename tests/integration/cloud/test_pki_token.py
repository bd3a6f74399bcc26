"""The cloud's CAs with their keys on a PKCS#11 token (a real SoftHSM2 token).

A root and an intermediate CA whose keys are made on tokens and never leave them
issue a vehicle's certificate and the CRL; the chain verifies with the public
keys alone; the key objects refuse export; the audit trail says which key signed.
A wrong PIN and a token that is not there are one-line errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from redstone_agent.pkcs11.token import TokenError, TokenKey
from redstone_agent.pkcs11.uri import parse
from redstone_cloud.backend import Backend
from redstone_cloud.services import pki
from tests.integration.cloud.fleet import Fleet
from tests.softhsm import SoftHsm, make_tokens


def test_a_token_ca_issues_certificates_and_crls_with_a_key_that_never_leaves_it(
    fleet: Fleet, backend: Backend, softhsm: SoftHsm, database_kind: str
) -> None:
    root_uri = softhsm.uri("token-a", f"root-{database_kind}")
    devices_uri = softhsm.uri("token-b", f"devices-{database_kind}")
    root = fleet.ok("POST", "/api/v1/pki/cas", json={"name": "oem-root", "key_uri": root_uri})
    devices = fleet.ok(
        "POST",
        "/api/v1/pki/cas",
        json={"name": "oem-devices", "parent": "oem-root", "key_uri": devices_uri},
    )
    fleet._ca = True  # the fleet's vehicles get their certificates from these CAs
    fleet.model()
    car = fleet.vehicle(1)
    assert fleet.poll(car)["vin"] == car.vin  # the device API takes the token-issued cert

    root_cert = x509.load_pem_x509_certificate(root["cert_pem"].encode())
    devices_cert = x509.load_pem_x509_certificate(devices["cert_pem"].encode())
    device_cert = x509.load_pem_x509_certificate(car.cert_pem.encode())
    root_cert.verify_directly_issued_by(root_cert)
    devices_cert.verify_directly_issued_by(root_cert)
    device_cert.verify_directly_issued_by(devices_cert)

    fleet.ok("POST", f"/api/v1/pki/certificates/{car.cert_serial}/revoke", json={"reason": "t"})
    with backend.sessions() as session:
        crl = x509.load_pem_x509_crl(pki.crl(session, backend.settings.key_dir, "oem-devices"))
    assert crl.is_signature_valid(devices_cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(device_cert.serial_number) is not None

    on_token = TokenKey(parse(devices_uri))
    try:
        assert on_token.attribute("EXTRACTABLE") is False
        assert on_token.attribute("SENSITIVE") is True
        with pytest.raises(TokenError, match="AttributeSensitive"):
            on_token.attribute("VALUE")  # the token itself refuses to show the private value
    finally:
        on_token.close()
    assert not list(backend.settings.key_dir.glob("ca-*.key"))  # no key file was written

    trail = fleet.ok("GET", "/api/v1/audit", params={"action": "pki.issue"})
    assert trail[0]["detail"]["signed_by"] == devices_uri.split("?")[0]
    made = fleet.ok("GET", "/api/v1/audit", params={"action": "pki.create_ca"})
    by_name = {row["object_id"]: row["detail"] for row in made}
    assert by_name["oem-devices"]["signed_by"] == root_uri.split("?")[0]


def test_a_wrong_pin_is_one_line_and_makes_nothing(
    fleet: Fleet, softhsm: SoftHsm, tmp_path: Path, database_kind: str
) -> None:
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("0000\n")
    uri = softhsm.uri("spare", f"never-{database_kind}", pin=False) + f"&pin-source=file:{wrong}"
    refused = fleet.admin("POST", "/api/v1/pki/cas", json={"name": "root", "key_uri": uri})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert "the token refused the PIN (wrong PIN)" in error and "\n" not in error
    assert "0000" not in error
    assert fleet.ok("GET", "/api/v1/pki/cas") == []


def test_a_token_that_is_not_there_is_one_line(softhsm: SoftHsm, tmp_path: Path) -> None:
    """The CLI in its own process, whose SoftHSM sees an empty slot list (the token was
    pulled, or this host never had it)."""
    config = tmp_path / "cloud.toml"
    config.write_text(
        f'[cloud]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\ndata_dir = "{tmp_path}/data"\n'
    )
    elsewhere = make_tokens(tmp_path / "other-host", ())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "redstone_cloud", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SOFTHSM2_CONF": str(elsewhere)},
            check=False,
        )

    assert cli("db", "upgrade").returncode == 0
    done = cli("pki", "init-ca", "root", "--key", softhsm.uri("token-a", "absent"))
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "no token labelled 'token-a'" in done.stderr and "Traceback" not in done.stderr
