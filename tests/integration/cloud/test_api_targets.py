"""Admin downloads by target name: any package, admin token only, audited."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.integration.cloud.fleet import Fleet


def test_admin_downloads_any_package_by_target_name_and_it_is_audited(
    fleet: Fleet, client: TestClient
) -> None:
    fleet.model()
    car = fleet.vehicle(1)
    data = bytes(range(256)) * 4
    fleet.package("adas", "2.0", "adas-hw", data)
    whole = fleet.admin("GET", "/api/v1/targets/adas-2.0")
    assert whole.status_code == 200 and whole.content == data
    etag = whole.headers["etag"]
    part = fleet.admin("GET", "/api/v1/targets/adas-2.0", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    same = fleet.admin("GET", "/api/v1/targets/adas-2.0", headers={"If-None-Match": etag})
    assert same.status_code == 304
    trail = fleet.ok("GET", "/api/v1/audit", params={"action": "package.download"})
    assert [(t["actor"], t["object_id"]) for t in trail] == [("alice", "adas-2.0")] * 3

    assert client.get("/api/v1/targets/adas-2.0").status_code == 401
    as_vehicle = fleet.device(car, "GET", "/api/v1/targets/adas-2.0")
    assert as_vehicle.status_code == 401, "a vehicle certificate is not an admin token"
    assert fleet.admin("GET", "/api/v1/targets/nope-1.0").status_code == 404
    assert fleet.admin("GET", "/api/v1/targets/..adas").status_code == 422
