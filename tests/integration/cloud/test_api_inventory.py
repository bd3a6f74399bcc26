"""Admin API: models, baselines, vehicles, packages, PKI — good and bad input."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from redstone_agent.uptane.keys import generate_signer, public_key_to_dict
from tests.integration.cloud.fleet import ADMIN, MODEL, Fleet, make_csr, vin_of


def test_admin_api_refuses_missing_and_wrong_tokens(client: TestClient) -> None:
    assert client.get("/api/v1/models").status_code == 401
    wrong = client.get("/api/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "admin token not recognised"}


def test_admin_json_bodies_are_capped_while_they_stream(fleet: Fleet) -> None:
    """A huge JSON body is refused with 413, with or without a Content-Length."""
    huge = b'{"name": "' + b"x" * (4 * 1024**2) + b'", "ecus": []}'
    declared = fleet.admin(
        "POST", "/api/v1/models", content=huge, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert "limit" in declared.json()["error"]
    chunked = fleet.admin(
        "POST",
        "/api/v1/models",
        content=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    fleet.model()  # a normal body still parses after the capped read
    assert [m["name"] for m in fleet.ok("GET", "/api/v1/models")] == ["sedan"]


def test_model_topology_rules(fleet: Fleet) -> None:
    fleet.model()
    assert fleet.admin("POST", "/api/v1/models", json=MODEL).status_code == 409
    two_primaries = {**MODEL, "name": "x", "ecus": [dict(e, kind="primary") for e in MODEL["ecus"]]}
    response = fleet.admin("POST", "/api/v1/models", json=two_primaries)
    assert response.status_code == 422
    assert "exactly one" in response.json()["error"]
    assert [m["name"] for m in fleet.ok("GET", "/api/v1/models")] == ["sedan"]
    assert fleet.admin("GET", "/api/v1/models/nope").status_code == 404


def test_vehicle_registration_checks_vin_topology_and_keys(fleet: Fleet) -> None:
    fleet.model()
    vehicle = fleet.vehicle(1)
    shown = fleet.ok("GET", f"/api/v1/vehicles/{vehicle.vin}")
    assert shown["model"] == "sedan"
    assert {e["serial"] for e in shown["ecus"]} == set(vehicle.hardware)
    key = public_key_to_dict(generate_signer().public_key)
    ecus = [
        {"serial": "s1", "hardware_id": "tbox-hw", "primary": True, "public_key": key},
        {"serial": "s2", "hardware_id": "adas-hw", "public_key": key},
    ]
    cases = [
        ({"vin": "SHORT", "model": "sedan", "ecus": ecus}, 422, "VIN"),
        ({"vin": vin_of(1), "model": "sedan", "ecus": ecus}, 409, "already registered"),
        ({"vin": vin_of(2), "model": "nope", "ecus": ecus}, 404, "no vehicle model"),
        ({"vin": vin_of(2), "model": "sedan", "ecus": ecus}, 422, "do not match model"),
    ]
    bad_key = [*ecus, {"serial": "s3", "hardware_id": "bcm-hw", "public_key": {"keyid": "x"}}]
    cases.append(({"vin": vin_of(2), "model": "sedan", "ecus": bad_key}, 422, "malformed"))
    taken = [dict(ecus[0], serial=f"{vin_of(1)}-tbox"), *ecus[1:], bad_key[2]]
    taken[2] = dict(taken[2], public_key=key)
    cases.append(({"vin": vin_of(2), "model": "sedan", "ecus": taken}, 409, "another vehicle"))
    for body, status, words in cases:
        response = fleet.admin("POST", "/api/v1/vehicles", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["error"]
    assert fleet.admin("GET", f"/api/v1/vehicles/{vin_of(9)}").status_code == 404


def test_package_upload_measures_and_caps(fleet: Fleet) -> None:
    data = b"image-bytes" * 1000
    package = fleet.package("adas", "1.0", "adas-hw", data)
    assert package["sha256"] == hashlib.sha256(data).hexdigest()
    assert package["length"] == len(data)
    assert package["target"] == "adas-1.0"
    again = fleet.admin(
        "PUT", "/api/v1/packages/adas/1.0", params={"hardware_id": "adas-hw"}, content=b"x"
    )
    assert again.status_code == 409
    huge = fleet.admin(
        "PUT",
        "/api/v1/packages/adas/2.0",
        params={"hardware_id": "adas-hw"},
        content=b"\0" * (1024 * 1024 + 1),
    )
    assert huge.status_code == 413
    bad_name = fleet.admin(
        "PUT", "/api/v1/packages/..%2Fetc/1", params={"hardware_id": "h"}, content=b"x"
    )
    assert bad_name.status_code in (404, 422)
    no_hw = fleet.admin("PUT", "/api/v1/packages/adas/3.0", content=b"x")
    assert no_hw.status_code == 422
    listed = fleet.ok("GET", "/api/v1/packages", params={"hardware_id": "adas-hw"})
    assert [p["target"] for p in listed] == ["adas-1.0"]
    fleet.package("adas", "1.1", "adas-hw", data + b"!")
    jobs = fleet.ok("GET", "/api/v1/deltas")
    assert [(j["from_target"], j["to_target"], j["state"]) for j in jobs] == [
        ("adas-1.0", "adas-1.1", "pending")
    ]


def test_baselines_name_one_package_per_hardware_id(fleet: Fleet) -> None:
    fleet.model()
    fleet.package("tbox", "1.0", "tbox-hw", b"t")
    fleet.package("adas", "1.0", "adas-hw", b"a")
    fleet.package("other", "1.0", "unknown-hw", b"o")
    body = {"name": "2027.1", "targets": ["tbox-1.0", "adas-1.0"]}
    baseline = fleet.ok("POST", "/api/v1/models/sedan/baselines", json=body)
    assert baseline["items"] == {"tbox-hw": "tbox-1.0", "adas-hw": "adas-1.0"}
    for targets, status in ((["other-1.0"], 422), (["nope"], 404)):
        response = fleet.admin(
            "POST", "/api/v1/models/sedan/baselines", json={"name": "b", "targets": targets}
        )
        assert response.status_code == status
    vehicle = fleet.vehicle(1, baseline="2027.1")
    assert fleet.ok("GET", f"/api/v1/vehicles/{vehicle.vin}")["baseline"] == "2027.1"


def test_pki_issues_from_csr_and_revokes(fleet: Fleet, client: TestClient) -> None:
    fleet.model()
    vehicle = fleet.vehicle(1)
    certs = fleet.ok("GET", f"/api/v1/vehicles/{vehicle.vin}/certificates")
    assert [c["serial"] for c in certs] == [vehicle.cert_serial]
    assert "BEGIN CERTIFICATE" in certs[0]["cert_pem"]
    cases = [
        ({"csr_pem": "garbage"}, 422),
        ({"csr_pem": make_csr()[1].decode(), "days": 0}, 422),
    ]
    for body, status in cases:
        response = fleet.admin("POST", f"/api/v1/vehicles/{vehicle.vin}/certificates", json=body)
        assert response.status_code == status, response.text
    unknown = fleet.admin(
        "POST",
        f"/api/v1/vehicles/{vin_of(7)}/certificates",
        json={"csr_pem": make_csr()[1].decode()},
    )
    assert unknown.status_code == 404
    revoked = fleet.ok("POST", f"/api/v1/pki/certificates/{vehicle.cert_serial}/revoke", json={})
    assert revoked["revoked_at"] is not None
    twice = fleet.admin("POST", f"/api/v1/pki/certificates/{vehicle.cert_serial}/revoke", json={})
    assert twice.status_code == 409
    crl = fleet.admin("GET", "/api/v1/pki/cas/oem-devices/crl")
    assert crl.status_code == 200 and b"X509 CRL" in crl.content
    cas = fleet.ok("GET", "/api/v1/pki/cas")
    assert [(c["name"], c["issuing"]) for c in cas] == [("oem-root", False), ("oem-devices", True)]
    assert client.get("/api/v1/pki/cas", headers=ADMIN).status_code == 200


def test_listings_page_and_filter(fleet: Fleet) -> None:
    fleet.model()
    for n in range(5):
        fleet.vehicle(n)
    first = fleet.ok("GET", "/api/v1/vehicles", params={"limit": 2})
    assert [v["vin"] for v in first] == [vin_of(0), vin_of(1)]
    rest = fleet.ok("GET", "/api/v1/vehicles", params={"after_id": 2, "model": "sedan"})
    assert [v["vin"] for v in rest] == [vin_of(n) for n in (2, 3, 4)]
    assert fleet.ok("GET", "/api/v1/vehicles", params={"model": "truck"}) == []
    assert fleet.admin("GET", "/api/v1/vehicles", params={"limit": 0}).status_code == 422
    fleet.package("tbox", "1.0", "tbox-hw", b"t")
    fleet.ok("POST", "/api/v1/models/sedan/baselines", json={"name": "b1", "targets": ["tbox-1.0"]})
    assert [b["name"] for b in fleet.ok("GET", "/api/v1/models/sedan/baselines")] == ["b1"]
    assert fleet.admin("GET", "/api/v1/models/truck/baselines").status_code == 404
    body = {"name": "c", "targeting": {"model": "sedan"}, "packages": ["tbox-1.0"]}
    fleet.ok("POST", "/api/v1/campaigns", json=body)
    assert fleet.ok("GET", "/api/v1/campaigns") == [{"name": "c", "state": "draft"}]
    assert fleet.admin("GET", "/api/v1/campaigns/nope").status_code == 404
    assert fleet.admin("GET", "/api/v1/ecus/nope/history").status_code == 404
