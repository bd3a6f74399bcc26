"""Device API: identity by certificate, manifests, nonces, events, logs, downloads, metadata."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from tuf.api.metadata import Metadata

from redstone_agent.uptane.keys import generate_signer
from redstone_cloud.backend import Backend
from redstone_cloud.uptane_link import OnlineRepository
from tests.integration.cloud.fleet import CERT_HEADER, Fleet, SimVehicle


@pytest.fixture
def car(fleet: Fleet) -> SimVehicle:
    fleet.model()
    return fleet.vehicle(1)


def test_device_identity_unknown_missing_and_revoked(
    fleet: Fleet, car: SimVehicle, client: TestClient
) -> None:
    assert client.get("/api/v1/device/poll").status_code == 401
    foreign = fleet.vehicle(2)
    foreign.cert_pem = foreign.cert_pem.replace("MII", "MIJ", 1)
    assert fleet.device(foreign, "GET", "/api/v1/device/poll").status_code in (401, 422)
    junk = client.get("/api/v1/device/poll", headers={CERT_HEADER: quote("not a cert")})
    assert junk.status_code == 422
    assert fleet.device(car, "GET", "/api/v1/device/poll").status_code == 200
    fleet.ok(
        "POST", f"/api/v1/pki/certificates/{car.cert_serial}/revoke", json={"reason": "stolen"}
    )
    refused = fleet.device(car, "GET", "/api/v1/device/poll")
    assert refused.status_code == 403
    assert refused.json() == {"error": "client certificate has been revoked"}


def test_poll_etag_answers_304_until_something_changes(fleet: Fleet, car: SimVehicle) -> None:
    first = fleet.device(car, "GET", "/api/v1/device/poll")
    assert first.json() == {"vin": car.vin, "poll_interval_s": 300, "update": None}
    etag = first.headers["etag"]
    again = fleet.device(car, "GET", "/api/v1/device/poll", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag
    other = fleet.device(car, "GET", "/api/v1/device/poll", headers={"If-None-Match": '"x"'})
    assert other.status_code == 200


def test_manifest_updates_inventory_and_history(fleet: Fleet, car: SimVehicle) -> None:
    response = fleet.send_manifest(car)
    assert response.status_code == 200, response.text
    assert sorted(response.json()["changed_ecus"]) == sorted(car.signers)
    car.installed[car.primary] = ("tbox-2.img", 5, hashlib.sha256(b"2").hexdigest(), 2)
    second = fleet.send_manifest(car).json()
    assert second["changed_ecus"] == [car.primary]
    history = fleet.ok("GET", f"/api/v1/ecus/{car.primary}/history")
    assert [h["target"] for h in history] == ["factory.img", "tbox-2.img"]
    shown = fleet.ok("GET", f"/api/v1/vehicles/{car.vin}")
    assert shown["last_seen_at"] is not None


def test_manifest_bad_input(fleet: Fleet, car: SimVehicle) -> None:
    post = lambda data: fleet.device(car, "POST", "/api/v1/device/manifest", content=data)  # noqa: E731
    nonce = fleet.nonce(car)
    forged = fleet.manifest_bytes(car, nonce, signer_override=generate_signer())
    response = post(forged)
    assert response.status_code == 422
    assert "not signed by the registered key" in response.json()["error"]
    tampered = json.loads(fleet.manifest_bytes(car, nonce))
    tampered["signed"]["ecu_version_manifests"][car.primary]["signed"]["report"] = {"x": 1}
    assert post(json.dumps(tampered).encode()).status_code == 422
    assert post(b"{not json").status_code == 422
    assert post(b'{"signed": {}}').status_code == 422
    assert post(b"x" * 300_000).status_code == 413
    never_issued = fleet.manifest_bytes(car, "f" * 32)
    assert post(never_issued).status_code == 409
    good = fleet.manifest_bytes(car, nonce)
    assert post(good).status_code == 200
    replay = post(good)
    assert replay.status_code == 409
    assert "replayed" in replay.json()["error"]
    other = fleet.vehicle(2)
    stolen_nonce = fleet.manifest_bytes(car, fleet.nonce(other))
    assert post(stolen_nonce).status_code == 409
    wrong_vin = fleet.manifest_bytes(other, fleet.nonce(car))
    assert post(wrong_vin).status_code == 422
    oldest = fleet.nonce(car)
    newest = [fleet.nonce(car) for _ in range(16)][-1]
    assert post(fleet.manifest_bytes(car, oldest)).status_code == 409, "forgotten nonce"
    assert post(fleet.manifest_bytes(car, newest)).status_code == 200


def test_events_and_logs_are_recorded_and_searchable(fleet: Fleet, car: SimVehicle) -> None:
    assert fleet.event(car, "boot", detail={"slot": "B"}).status_code == 200
    assert fleet.event(car, "", detail={}).status_code == 422
    assert fleet.event(car, "x", campaign="nope").status_code == 404
    log = fleet.device(
        car,
        "POST",
        "/api/v1/device/logs",
        content=b"flash failed: NRC 0x72",
        params={"source": "bcm"},
    )
    assert log.status_code == 201
    assert fleet.device(car, "POST", "/api/v1/device/logs", content=b"\xff\xfe").status_code == 422
    assert fleet.device(car, "POST", "/api/v1/device/logs", content=b"x" * 5000).status_code == 413
    found = fleet.ok("GET", "/api/v1/logs", params={"vin": car.vin, "q": "NRC 0x72"})
    assert [(f["source"], f["text"]) for f in found] == [("bcm", "flash failed: NRC 0x72")]
    assert fleet.ok("GET", "/api/v1/logs", params={"q": "100%_"}) == []
    trail = fleet.ok("GET", "/api/v1/audit", params={"actor": f"vehicle:{car.vin}"})
    assert [t["action"] for t in trail] == ["device.boot"]
    assert trail[0]["detail"] == {"event": {"slot": "B"}, "ecu_serial": ""}
    hostile = fleet.event(car, "odd", detail={"actor": "admin", "session": 1, "object_id": 2})
    assert hostile.status_code == 200
    last = fleet.ok("GET", "/api/v1/audit", params={"action": "device.odd"})[0]
    assert last["actor"] == f"vehicle:{car.vin}" and last["detail"]["event"]["actor"] == "admin"
    big = fleet.event(car, "x", detail={"blob": "y" * 70_000})
    assert big.status_code == 413
    assert fleet.device(car, "POST", "/api/v1/device/events", content=b"{").status_code == 422


def test_download_with_ranges(fleet: Fleet, car: SimVehicle) -> None:
    data = bytes(range(256)) * 40
    fleet.package("adas", "1.0", "adas-hw", data)
    fleet.assign(car, "adas-1.0")
    url = "/api/v1/device/targets/adas-1.0"
    whole = fleet.device(car, "GET", url)
    assert whole.status_code == 200 and whole.content == data
    etag = whole.headers["etag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    assert whole.headers["accept-ranges"] == "bytes"
    cases = [
        ("bytes=0-9", 206, data[:10], f"bytes 0-9/{len(data)}"),
        ("bytes=10000-", 206, data[10000:], f"bytes 10000-10239/{len(data)}"),
        ("bytes=-5", 206, data[-5:], f"bytes 10235-10239/{len(data)}"),
        ("bytes=10230-99999", 206, data[10230:], f"bytes 10230-10239/{len(data)}"),
        ("bytes=5-2", 200, data, None),
        ("bytes=0-1,5-6", 200, data, None),
        ("items=0-1", 200, data, None),
        ("bytes=abc", 200, data, None),
    ]
    for header, status, body, content_range in cases:
        response = fleet.device(car, "GET", url, headers={"Range": header})
        assert response.status_code == status, header
        assert response.content == body, header
        assert response.headers.get("content-range") == content_range, header
    for header in ("bytes=10240-", "bytes=-0", "bytes=99999-100000"):
        response = fleet.device(car, "GET", url, headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{len(data)}"
    stale = fleet.device(car, "GET", url, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == data
    fresh = fleet.device(car, "GET", url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206
    cached = fleet.device(car, "GET", url, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert fleet.device(car, "GET", "/api/v1/device/targets/nope").status_code == 404
    sha = hashlib.sha256(data).hexdigest()
    hashed = fleet.device(car, "GET", f"/api/v1/device/targets/{sha}.adas-1.0")
    assert hashed.status_code == 200 and hashed.content == data
    wrong = fleet.device(car, "GET", f"/api/v1/device/targets/{'0' * 64}.adas-1.0")
    assert wrong.status_code == 404


def test_director_metadata_is_per_vehicle_and_signed(fleet: Fleet, car: SimVehicle) -> None:
    root = fleet.device(car, "GET", f"/uptane/director/{car.vin}/root.json")
    assert root.status_code == 200
    parsed = Metadata.from_bytes(root.content)
    assert parsed.signed.type == "root"
    timestamp = fleet.device(car, "GET", f"/uptane/director/{car.vin}/timestamp.json")
    assert Metadata.from_bytes(timestamp.content).signed.type == "timestamp"
    assert b"private" not in root.content
    other = fleet.vehicle(2)
    assert fleet.device(other, "GET", f"/uptane/director/{car.vin}/root.json").status_code == 403
    assert fleet.device(car, "GET", f"/uptane/director/{car.vin}/9.root.json").status_code == 404
    assert fleet.device(car, "GET", f"/uptane/director/{car.vin}/..%2F.json").status_code in (
        404,
        422,
    )


def test_director_timestamp_is_resigned_before_it_expires(
    fleet: Fleet, car: SimVehicle, backend: Backend
) -> None:
    def timestamp_version(vehicle: SimVehicle) -> int:
        answer = fleet.device(vehicle, "GET", f"/uptane/director/{vehicle.vin}/timestamp.json")
        return int(Metadata.from_bytes(answer.content).signed.version)

    steady = timestamp_version(car)
    assert timestamp_version(car) == steady, "a day-long timestamp is not re-signed"
    short_lived = {"timestamp": dt.timedelta(hours=1)}
    backend.director = OnlineRepository(backend.director.keys, short_lived)
    other = fleet.vehicle(2)
    first = timestamp_version(other)
    assert timestamp_version(other) > first, "an expiring timestamp is re-signed"
