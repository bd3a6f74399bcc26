"""Campaigns end to end through the API: phased rollout, thresholds, pause/resume/cancel, audit."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from tuf.api.metadata import Metadata

from tests.integration.cloud.fleet import Fleet, SimVehicle


@pytest.fixture
def fleet10(fleet: Fleet) -> Fleet:
    fleet.model()
    fleet.package("tbox", "2.0", "tbox-hw", b"tbox two" * 100, release_counter=2)
    fleet.package("adas", "2.0", "adas-hw", b"adas two" * 100, release_counter=2)
    for n in range(10):
        fleet.vehicle(n)
    return fleet


def campaign(name: str = "spring", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "targeting": {"model": "sedan"},
        "packages": ["tbox-2.0", "adas-2.0"],
        "groups": [
            {"percent": 20, "success_threshold": 100, "error_threshold": 50},
            {"percent": 100, "success_threshold": 90, "error_threshold": 20},
        ],
    }
    body.update(overrides)
    return body


def groups_of(fleet: Fleet, name: str) -> dict[int, list[SimVehicle]]:
    rows = fleet.ok("GET", f"/api/v1/campaigns/{name}/vehicles")
    out: dict[int, list[SimVehicle]] = {}
    for row in rows:
        out.setdefault(row["group"], []).append(fleet.vehicles[row["vin"]])
    return out


def succeed(fleet: Fleet, car: SimVehicle) -> None:
    update = fleet.poll(car)["update"]
    assert update is not None
    assert fleet.event(car, "download_started").json()["assignment"] == "downloading"
    fleet.install(car, update)
    response = fleet.send_manifest(car)
    assert response.status_code == 200, response.text
    assert response.json()["assignment"] == "succeeded"


def director_targets(fleet: Fleet, car: SimVehicle) -> dict[str, Any]:
    timestamp = fleet.device(car, "GET", f"/uptane/director/{car.vin}/timestamp.json")
    snapshot_version = Metadata.from_bytes(timestamp.content).signed.snapshot_meta.version
    snapshot = fleet.device(
        car, "GET", f"/uptane/director/{car.vin}/{snapshot_version}.snapshot.json"
    )
    version = Metadata.from_bytes(snapshot.content).signed.meta["targets.json"].version
    targets = fleet.device(car, "GET", f"/uptane/director/{car.vin}/{version}.targets.json")
    assert targets.status_code == 200
    return {
        name: t.custom for name, t in Metadata.from_bytes(targets.content).signed.targets.items()
    }


def test_phased_rollout_advances_then_aborts_on_errors(fleet10: Fleet) -> None:
    fleet = fleet10
    created = fleet.ok("POST", "/api/v1/campaigns", json=campaign())
    assert created["state"] == "draft"
    started = fleet.ok("POST", "/api/v1/campaigns/spring/start")
    assert started["groups"] == [2, 8]
    groups = groups_of(fleet, "spring")
    first, second = groups[0], groups[1]
    assert all(fleet.poll(car)["update"] is None for car in second)
    update = fleet.poll(first[0])["update"]
    assert update["campaign"] == "spring"
    assert update["ecus"][first[0].primary]["target"] == "tbox-2.0"
    targets = director_targets(fleet, first[0])
    assert set(targets) == {"tbox-2.0", "adas-2.0"}
    assert targets["tbox-2.0"]["ecus"] == {first[0].primary: {"hardware_id": "tbox-hw"}}
    for car in first:
        succeed(fleet, car)
    status = fleet.ok("GET", "/api/v1/campaigns/spring")
    assert status["state"] == "running"
    assert [g["state"] for g in status["groups"]] == ["done", "running"]
    for car in second[:2]:
        assert fleet.poll(car)["update"] is not None
        assert fleet.event(car, "install_failed", detail={"message": "NRC 0x72"}).status_code == 200
    status = fleet.ok("GET", "/api/v1/campaigns/spring")
    assert status["state"] == "aborted"
    assert status["counts"] == {"succeeded": 2, "failed": 2, "cancelled": 6}
    for car in second[2:]:
        assert fleet.poll(car)["update"] is None
    untouched = second[2]
    assert director_targets(fleet, untouched) == {}
    actions = [
        a["action"] for a in fleet.ok("GET", "/api/v1/audit", params={"object_type": "campaign"})
    ]
    assert actions == ["campaign.create", "campaign.start", "campaign.advance", "campaign.abort"]
    export = fleet.admin("GET", "/api/v1/audit/export", params={"action": "campaign.abort"})
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [(x["actor"], x["object_id"]) for x in lines] == [("rollout", "spring")]


def test_rollout_completes_and_pauses_below_success_threshold(fleet10: Fleet) -> None:
    fleet = fleet10
    body = campaign(groups=[{"percent": 100, "success_threshold": 100, "error_threshold": 50}])
    body["targeting"] = {"vins": list(fleet.vehicles)[:3]}
    fleet.ok("POST", "/api/v1/campaigns", json=body)
    assert fleet.ok("POST", "/api/v1/campaigns/spring/start")["vehicles"] == 3
    cars = groups_of(fleet, "spring")[0]
    succeed(fleet, cars[0])
    succeed(fleet, cars[1])
    fleet.poll(cars[2])
    fleet.event(cars[2], "consent_denied")
    status = fleet.ok("GET", "/api/v1/campaigns/spring")
    assert status["state"] == "paused", status
    fleet.ok("POST", "/api/v1/campaigns/spring/cancel", json={"reason": "done by hand"})
    assert fleet.ok("GET", "/api/v1/campaigns/spring")["state"] == "cancelled"
    second = campaign("autumn", groups=[{"percent": 100, "success_threshold": 50}])
    second["targeting"] = {"vins": [cars[0].vin]}
    second["packages"] = ["adas-2.0"]
    fleet.package("adas", "3.0", "adas-hw", b"three", release_counter=3)
    second["packages"] = ["adas-3.0"]
    fleet.ok("POST", "/api/v1/campaigns", json=second)
    fleet.ok("POST", "/api/v1/campaigns/autumn/start")
    succeed(fleet, cars[0])
    assert fleet.ok("GET", "/api/v1/campaigns/autumn")["state"] == "completed"


def test_pause_resume_and_cancel(fleet10: Fleet) -> None:
    fleet = fleet10
    fleet.ok("POST", "/api/v1/campaigns", json=campaign(groups=[{"percent": 100}]))
    fleet.ok("POST", "/api/v1/campaigns/spring/start")
    cars = list(fleet.vehicles.values())
    assert fleet.poll(cars[0])["update"] is not None
    busy = cars[1]
    fleet.poll(busy)
    fleet.event(busy, "download_started")
    fleet.ok("POST", "/api/v1/campaigns/spring/pause", json={"reason": "hotline calls"})
    assert fleet.poll(cars[0])["update"] is None
    assert director_targets(fleet, cars[0]) == {}
    assert fleet.poll(busy)["update"]["state"] == "downloading"
    assert fleet.admin("POST", "/api/v1/campaigns/spring/pause", json={}).status_code == 409
    fleet.ok("POST", "/api/v1/campaigns/spring/resume")
    assert fleet.poll(cars[0])["update"] is not None
    fleet.ok("POST", "/api/v1/campaigns/spring/cancel", json={})
    status = fleet.ok("GET", "/api/v1/campaigns/spring")
    assert status["state"] == "cancelled"
    assert status["counts"] == {"cancelled": 9, "downloading": 1}
    assert fleet.admin("POST", "/api/v1/campaigns/spring/resume").status_code == 409
    assert fleet.admin("POST", "/api/v1/campaigns/spring/start").status_code == 409


def test_schedule_and_window_hold_back_offers(fleet10: Fleet) -> None:
    fleet = fleet10
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    fleet.ok(
        "POST",
        "/api/v1/campaigns",
        json=campaign("later", groups=[{"percent": 100}], start_at=later),
    )
    now = dt.datetime.now(dt.UTC)
    closed = {"start": f"{(now.hour + 2) % 24:02d}:00", "end": f"{(now.hour + 3) % 24:02d}:00"}
    car = next(iter(fleet.vehicles.values()))
    body = campaign("window", groups=[{"percent": 100}], window=closed)
    body["targeting"] = {"vins": [car.vin]}
    fleet.ok("POST", "/api/v1/campaigns", json=body)
    fleet.ok("POST", "/api/v1/campaigns/window/start")
    assert fleet.poll(car)["update"] is None
    fleet.ok("POST", "/api/v1/campaigns/window/cancel", json={})
    fleet.ok("POST", "/api/v1/campaigns/later/start")
    assert all(fleet.poll(c)["update"] is None for c in fleet.vehicles.values())


def test_campaign_definition_and_consistency_errors(fleet10: Fleet) -> None:
    fleet = fleet10
    bad = [
        (campaign(packages=["nope"]), 404),
        (campaign(packages=[]), 422),
        (campaign(targeting={}), 422),
        (campaign(groups=[{"percent": 50}]), 422),
        (campaign(groups=[{"percent": 60}, {"percent": 40}, {"percent": 100}]), 422),
        (campaign(window={"start": "25:00", "end": "01:00"}), 422),
        (campaign(window={"start": "01:00", "end": "01:00"}), 422),
        (campaign(start_at="2030-01-01T00:00:00"), 422),
    ]
    for body, status in bad:
        response = fleet.admin("POST", "/api/v1/campaigns", json=body)
        assert response.status_code == status, (body, response.text)
    cars = list(fleet.vehicles.values())
    fleet.package("tbox", "1.0", "tbox-hw", b"old", release_counter=1)
    fleet.package("tbox", "9.0", "tbox-hw", b"newest", release_counter=9)
    newer = cars[0]
    newer.installed[newer.primary] = ("tbox-9.0", 6, "0" * 64, 9)
    assert fleet.send_manifest(newer).status_code == 200
    body = campaign("downgrade", packages=["tbox-1.0"], groups=[{"percent": 100}])
    body["targeting"] = {"vins": [newer.vin, cars[1].vin]}
    fleet.ok("POST", "/api/v1/campaigns", json=body)
    started = fleet.ok("POST", "/api/v1/campaigns/downgrade/start")
    assert started["vehicles"] == 1
    assert "roll it back" in started["skipped"][newer.vin]
    body = campaign("clash", packages=["tbox-2.0"], groups=[{"percent": 100}])
    body["targeting"] = {"vins": [cars[1].vin]}
    fleet.ok("POST", "/api/v1/campaigns", json=body)
    refused = fleet.admin("POST", "/api/v1/campaigns/clash/start")
    assert refused.status_code == 422
    assert "no eligible vehicle" in refused.json()["error"]
    by_version = campaign("by-version", packages=["tbox-2.0"], groups=[{"percent": 100}])
    by_version["targeting"] = {"ecu_versions": {"tbox-hw": ["factory.img"]}}
    fleet.ok("POST", "/api/v1/campaigns", json=by_version)
    assert fleet.admin("POST", "/api/v1/campaigns/by-version/start").status_code == 422
    cars[2].installed.clear()
    assert fleet.send_manifest(cars[2]).status_code == 200
    by_version["name"] = "by-version-2"
    fleet.ok("POST", "/api/v1/campaigns", json=by_version)
    assert fleet.ok("POST", "/api/v1/campaigns/by-version-2/start")["vehicles"] == 1


def test_baseline_sets_the_rollback_floor_until_a_manifest_reports(fleet: Fleet) -> None:
    fleet.model()
    fleet.package("tbox", "3.0", "tbox-hw", b"three", release_counter=3)
    fleet.package("tbox", "2.0", "tbox-hw", b"two", release_counter=2)
    fleet.ok("POST", "/api/v1/models/sedan/baselines", json={"name": "b3", "targets": ["tbox-3.0"]})
    on_baseline = fleet.vehicle(1, baseline="b3")
    plain = fleet.vehicle(2)
    body = campaign("down", packages=["tbox-2.0"], groups=[{"percent": 100}])
    body["targeting"] = {"model": "sedan"}
    fleet.ok("POST", "/api/v1/campaigns", json=body)
    started = fleet.ok("POST", "/api/v1/campaigns/down/start")
    assert started["vehicles"] == 1
    assert "is on baseline b3 at release 3" in started["skipped"][on_baseline.vin]
    assert plain.vin not in started["skipped"]
