"""EST (RFC 7030): a vehicle gets its first certificate with a one-time token and renews
it over its own mTLS identity; used, expired or foreign tokens and revoked certificates
are refused with one line (and a Basic challenge where credentials are asked for)."""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from httpx import Response
from sqlalchemy import update

from redstone_cloud.backend import Backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.models import EnrollmentToken
from tests.integration.cloud.fleet import CERT_HEADER, Fleet, SimVehicle, make_csr

PKCS7 = "application/pkcs7-mime; smime-type=certs-only"


def csr_body() -> bytes:
    _key, pem = make_csr("ignored-by-the-ca")
    der = x509.load_pem_x509_csr(pem).public_bytes(Encoding.DER)
    return base64.encodebytes(der)


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def enroll(fleet: Fleet, headers: dict[str, str], body: bytes | None = None) -> Response:
    return fleet.client.post(
        "/.well-known/est/simpleenroll",
        content=csr_body() if body is None else body,
        headers={"Content-Type": "application/pkcs10", **headers},
    )


def certs_of(answer: Response) -> list[x509.Certificate]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == PKCS7
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer.content))


def token_for(fleet: Fleet, vin: str, ttl_s: int = 3600) -> str:
    made = fleet.ok("POST", f"/api/v1/vehicles/{vin}/enrollment-tokens", json={"ttl_s": ttl_s})
    return str(made["token"])


def as_device(cert: x509.Certificate) -> dict[str, str]:
    return {CERT_HEADER: quote(cert.public_bytes(Encoding.PEM).decode())}


def test_a_vehicle_enrolls_once_with_its_token_then_renews_itself(
    fleet: Fleet, backend: Backend
) -> None:
    fleet.model()
    car: SimVehicle = fleet.vehicle(1)
    cas = certs_of(fleet.client.get("/.well-known/est/cacerts"))
    token = token_for(fleet, car.vin)

    [first] = certs_of(enroll(fleet, basic(car.vin, token)))
    assert car.vin in first.subject.rfc4514_string()
    issuer = next(ca for ca in cas if ca.subject == first.issuer)
    first.verify_directly_issued_by(issuer)
    polled = fleet.client.get("/api/v1/device/poll", headers=as_device(first))
    assert polled.status_code == 200 and polled.json()["vin"] == car.vin

    again = enroll(fleet, basic(car.vin, token))
    assert again.status_code == 401 and "already used" in again.json()["error"]
    assert again.headers["www-authenticate"].startswith("Basic")

    renewed = fleet.client.post(
        "/.well-known/est/simplereenroll",
        content=csr_body(),
        headers={"Content-Type": "application/pkcs10", **as_device(first)},
    )
    [second] = certs_of(renewed)
    assert (
        second.serial_number != first.serial_number and car.vin in second.subject.rfc4514_string()
    )
    assert fleet.client.get("/api/v1/device/poll", headers=as_device(second)).status_code == 200

    serial = format(first.serial_number, "x")
    fleet.ok("POST", f"/api/v1/pki/certificates/{serial}/revoke", json={"reason": "stolen"})
    refused = fleet.client.post(
        "/.well-known/est/simplereenroll",
        content=csr_body(),
        headers={"Content-Type": "application/pkcs10", **as_device(first)},
    )
    assert refused.status_code == 403 and "revoked" in refused.json()["error"]

    actions = [
        a["action"] for a in fleet.ok("GET", "/api/v1/audit", params={"object_type": "certificate"})
    ]
    assert {"est.enroll", "est.reenroll"} <= set(actions)


def test_enrollment_refusals_are_one_line(fleet: Fleet, backend: Backend) -> None:
    fleet.model()
    car, other = fleet.vehicle(1), fleet.vehicle(2)
    token = token_for(fleet, car.vin)
    cases = {
        "no credentials": ({}, "needs HTTP Basic credentials"),
        "bearer, not basic": ({"Authorization": f"Bearer {token}"}, "needs HTTP Basic"),
        "not base64": ({"Authorization": "Basic %%%"}, "malformed Basic credentials"),
        "another vehicle's VIN": (basic(other.vin, token), "not recognised for this VIN"),
        "unknown token": (basic(car.vin, "x" * 32), "not recognised for this VIN"),
    }
    for name, (headers, says) in cases.items():
        answer = enroll(fleet, headers)
        assert answer.status_code == 401, name
        assert says in answer.json()["error"], (name, answer.text)
        assert answer.headers["www-authenticate"] == 'Basic realm="redstone-est"', name

    garbage = enroll(fleet, basic(car.vin, token), body=b"not a request!")
    assert garbage.status_code == 422 and "not base64" in garbage.json()["error"]
    not_csr = enroll(fleet, basic(car.vin, token), body=base64.encodebytes(b"\x30\x03\x02\x01\x00"))
    assert not_csr.status_code == 422 and "not a DER PKCS#10" in not_csr.json()["error"]

    late = token_for(fleet, other.vin, ttl_s=60)
    with transaction(backend.sessions) as session:
        session.execute(
            update(EnrollmentToken).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(1))
        )
    expired = enroll(fleet, basic(other.vin, late))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]
    unknown = fleet.admin("POST", "/api/v1/vehicles/RSTEST00000000099/enrollment-tokens", json={})
    assert unknown.status_code == 404
    short = fleet.admin("POST", f"/api/v1/vehicles/{car.vin}/enrollment-tokens", json={"ttl_s": 5})
    assert short.status_code == 422
