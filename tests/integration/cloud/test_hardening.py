"""Issue 15 items 6 and 7 through the API: hostile input is a 4xx with the error shape,
never a 500; vehicles stay inside their own campaigns and budgets."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from redstone_cloud.api.app import create_app
from redstone_cloud.backend import Backend
from redstone_cloud.quotas import Quotas
from redstone_cloud.services import director
from tests.integration.cloud.conftest import make_settings
from tests.integration.cloud.fleet import ADMIN_TOKEN, Fleet, SimVehicle


@pytest.fixture
def car(fleet: Fleet) -> SimVehicle:
    fleet.model()
    return fleet.vehicle(1)


def assert_error(response: Any, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    assert "\n" not in body["error"]


def start_campaign(fleet: Fleet, name: str, vins: list[str], packages: list[str]) -> None:
    spec = {"name": name, "targeting": {"vins": vins}, "packages": packages}
    fleet.ok("POST", "/api/v1/campaigns", json=spec)
    fleet.ok("POST", f"/api/v1/campaigns/{name}/start")


# --- item 6: input validation ------------------------------------------------------------------


def test_hostile_range_headers_are_never_a_500(fleet: Fleet, car: SimVehicle) -> None:
    data = bytes(range(256)) * 4
    fleet.package("adas", "1.0", "adas-hw", data)
    fleet.assign(car, "adas-1.0")
    url = "/api/v1/device/targets/adas-1.0"
    for header in ("bytes=\u00b2-\u00b3", "bytes=\u0661-\u0662", "bytes=0-" + "9" * 5000):
        response = fleet.device(car, "GET", url, headers={"Range": header.encode()})  # type: ignore[dict-item]
        assert response.status_code in (200, 206), header[:20]
        assert response.content == data[: len(response.content)]
    far = fleet.device(car, "GET", url, headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert_error(far, 416)


def test_deep_json_is_422_everywhere(fleet: Fleet, car: SimVehicle) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    nested_event = b'{"kind": "x", "detail": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}"
    assert_error(fleet.device(car, "POST", "/api/v1/device/events", content=nested_event), 422)
    assert_error(fleet.device(car, "POST", "/api/v1/device/manifest", content=deep), 422)
    assert_error(fleet.admin("POST", "/api/v1/models", content=deep), 422)
    assert_error(fleet.admin("PUT", "/api/v1/image-repo/1.root.json", content=deep), 422)


def test_out_of_range_integers_are_422(fleet: Fleet, car: SimVehicle) -> None:
    huge = str(2**63)
    for path in ("/api/v1/audit", "/api/v1/vehicles"):
        assert_error(fleet.admin("GET", path, params={"after_id": huge}), 422)
        assert_error(fleet.admin("GET", path, params={"after_id": "-1"}), 422)
    assert_error(fleet.admin("GET", "/api/v1/audit", params={"after_id": "9" * 5000}), 422)
    upload = fleet.admin(
        "PUT",
        "/api/v1/packages/adas/9.0",
        params={"hardware_id": "adas-hw", "release_counter": str(2**31)},
        content=b"x",
    )
    assert_error(upload, 422)
    group = {"percent": 100, "success_threshold": 2**40}
    spec = {"name": "big", "targeting": {}, "packages": [], "groups": [group]}
    assert_error(fleet.admin("POST", "/api/v1/campaigns", json=spec), 422)
    naive = fleet.admin("GET", "/api/v1/audit", params={"since": "2027-01-01T00:00:00"})
    assert_error(naive, 422)


def test_window_with_non_ascii_digits_is_422(fleet: Fleet, car: SimVehicle) -> None:
    fleet.package("adas", "2.0", "adas-hw", b"new")
    for start in ("\u00b2\u00b2:00", "\u0662\u0662:00"):
        spec = {
            "name": "w",
            "targeting": {},
            "packages": ["adas-2.0"],
            "window": {"start": start, "end": "04:00"},
        }
        assert_error(fleet.admin("POST", "/api/v1/campaigns", json=spec), 422)


def test_non_finite_event_detail_is_refused_and_export_stays_jsonl(
    fleet: Fleet, car: SimVehicle
) -> None:
    for number in (b"1e400", b"-1e400", b"NaN", b"Infinity"):
        body = b'{"kind": "odd", "detail": {"x": ' + number + b"}}"
        assert_error(fleet.device(car, "POST", "/api/v1/device/events", content=body), 422)
    for text in ("\\u0000", "\\ud800"):
        body = b'{"kind": "odd", "detail": {"x": "' + text.encode() + b'"}}'
        assert_error(fleet.device(car, "POST", "/api/v1/device/events", content=body), 422)
    assert fleet.event(car, "fine", detail={"x": 1.5}).status_code == 200
    export = fleet.admin("GET", "/api/v1/audit/export")
    assert export.status_code == 200
    records = [json.loads(line) for line in export.text.splitlines()]
    assert [r["action"] for r in records if r["action"].startswith("device.")] == ["device.fine"]


def test_framework_errors_have_the_error_shape(fleet: Fleet, car: SimVehicle) -> None:
    assert_error(fleet.admin("GET", "/api/v1/no-such-route"), 404)
    assert_error(fleet.admin("DELETE", "/api/v1/models"), 405)
    assert_error(fleet.admin("GET", "/api/v1/vehicles", params={"limit": "many"}), 422)
    assert_error(fleet.admin("POST", "/api/v1/models", content=b"{not json"), 422)
    assert_error(fleet.admin("POST", "/api/v1/models", json={"name": 1}), 422)
    assert_error(fleet.admin("GET", "/api/v1/models/a%00b"), 400)
    assert_error(fleet.admin("GET", "/api/v1/logs", params={"q": "a\x00b"}), 400)
    assert_error(fleet.client.get("/docs"), 404)
    assert_error(fleet.client.get("/openapi.json"), 404)


def test_target_names_with_separators_or_dotdot_are_refused(fleet: Fleet, car: SimVehicle) -> None:
    for target in ("../escape", "a/b", "/abs", "x..y", "back\\slash"):
        upload = fleet.admin(
            "PUT",
            "/api/v1/packages/adas/3.0",
            params={"hardware_id": "adas-hw", "target": target},
            content=b"x",
        )
        assert_error(upload, 422)
    assert_error(
        fleet.admin("PUT", "/api/v1/packages/adas/3..0", params={"hardware_id": "a"}, content=b""),
        422,
    )
    for target in ("..%2F..%2Fetc%2Fpasswd", "a/b", "%2Fetc%2Fpasswd"):
        response = fleet.device(car, "GET", f"/api/v1/device/targets/{target}")
        assert response.status_code in (404, 422), target
        assert list(response.json()) == ["error"]


def test_bearer_scheme_is_case_insensitive(fleet: Fleet) -> None:
    for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):
        headers = {"Authorization": f"{scheme} {ADMIN_TOKEN}"}
        assert fleet.client.get("/api/v1/models", headers=headers).status_code == 200, scheme
    assert_error(fleet.client.get("/api/v1/models", headers={"Authorization": "Basic x"}), 401)
    assert_error(fleet.client.get("/api/v1/models", headers={"Authorization": "Bearer"}), 401)


# --- item 7: authorisation and limits ------------------------------------------------------------


def test_admin_body_is_not_read_before_authentication(fleet: Fleet) -> None:
    consumed: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(4):
            consumed.append(1)
            yield b" " * 1024

    response = fleet.client.post(
        "/api/v1/models", content=body(), headers={"Authorization": "Bearer wrong"}
    )
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert len(consumed) <= 1, "the server read the body of an unauthenticated request"


def test_vehicle_events_and_logs_only_for_its_campaigns(fleet: Fleet, car: SimVehicle) -> None:
    other = fleet.vehicle(2)
    fleet.package("adas", "2.0", "adas-hw", b"new adas")
    start_campaign(fleet, "mine", [car.vin], ["adas-2.0"])
    start_campaign(fleet, "theirs", [other.vin], ["adas-2.0"])
    assert fleet.poll(car)["update"]["campaign"] == "mine"
    assert fleet.event(car, "download_started", campaign="mine").status_code == 200
    assert_error(fleet.event(car, "install_failed", campaign="theirs"), 403)
    assert_error(fleet.event(car, "x", campaign="nope"), 404)
    log = lambda campaign: fleet.device(  # noqa: E731
        car, "POST", "/api/v1/device/logs", content=b"text", params={"campaign": campaign}
    )
    assert log("mine").status_code == 201
    assert_error(log("theirs"), 403)
    states = {r["vin"]: r["state"] for r in fleet.ok("GET", "/api/v1/campaigns/theirs/vehicles")}
    assert states[other.vin] != "failed", "another vehicle's campaign was moved"


def test_vehicle_quotas_on_events_and_logs_answer_429(
    database_url: str, tmp_path: Path, backend: Backend
) -> None:
    now = [0.0]
    backend.settings = make_settings(
        database_url,
        tmp_path / "data",
        device_events_per_hour=3,
        device_event_bytes_per_hour=10_000,
        device_logs_per_hour=100,
        device_log_bytes_per_hour=3000,
    )
    backend.quotas = Quotas(clock=lambda: now[0])
    with TestClient(create_app(backend)) as client:
        fleet = Fleet(client)
        fleet.model()
        car, other = fleet.vehicle(1), fleet.vehicle(2)
        for _ in range(3):
            assert fleet.event(car, "tick").status_code == 200
        refused = fleet.event(car, "tick")
        assert_error(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert fleet.event(other, "tick").status_code == 200, "quotas are per vehicle"
        now[0] += 1200  # a third of an hour refills one event
        assert fleet.event(car, "tick").status_code == 200
        assert_error(fleet.event(car, "tick"), 429)
        post_log = lambda size: fleet.device(  # noqa: E731
            car, "POST", "/api/v1/device/logs", content=b"x" * size
        )
        assert post_log(2000).status_code == 201
        assert_error(post_log(2000), 429)
        assert post_log(900).status_code == 201


def test_vehicle_downloads_only_its_assigned_targets(fleet: Fleet, backend: Backend) -> None:
    """The default scope is ``assignment`` (the settings under test are the defaults)."""
    assert backend.settings.device_download_scope == "assignment"
    fleet.model()
    car, other = fleet.vehicle(1), fleet.vehicle(2)
    fleet.package("adas", "2.0", "adas-hw", b"new adas")
    fleet.package("tbox", "2.0", "tbox-hw", b"new tbox")
    assert_error(fleet.device(car, "GET", "/api/v1/device/targets/adas-2.0"), 403)
    start_campaign(fleet, "mine", [car.vin], ["adas-2.0"])
    assert fleet.poll(car)["update"] is not None
    mine = fleet.device(car, "GET", "/api/v1/device/targets/adas-2.0")
    assert mine.status_code == 200 and mine.content == b"new adas"
    assert_error(fleet.device(car, "GET", "/api/v1/device/targets/tbox-2.0"), 403)
    assert_error(fleet.device(other, "GET", "/api/v1/device/targets/adas-2.0"), 403)


def test_vehicle_may_download_the_image_it_runs(fleet: Fleet) -> None:
    """The Master keeps a UDS ECU's current image to flash it back if an update fails."""
    fleet.model()
    car, other = fleet.vehicle(1), fleet.vehicle(2)
    old = fleet.package("bcm", "1.0", "bcm-hw", b"old bcm")
    url = f"/api/v1/device/targets/{old['sha256']}.bcm-1.0"
    assert_error(fleet.device(car, "GET", url), 403)
    bcm = next(serial for serial, hw in car.hardware.items() if hw == "bcm-hw")
    car.installed[bcm] = ("bcm-1.0", old["length"], old["sha256"], 1)
    assert fleet.send_manifest(car).status_code == 200
    running = fleet.device(car, "GET", url)
    assert running.status_code == 200 and running.content == b"old bcm"
    assert_error(fleet.device(other, "GET", url), 403)
    uds = fleet.package("bcm", "0.9", "bcm-hw", b"older bcm")  # a UDS ECU reports no hash
    car.installed[bcm] = ("bcm-0.9", uds["length"], "", 1)
    assert fleet.send_manifest(car).status_code == 200
    assert fleet.device(car, "GET", "/api/v1/device/targets/bcm-0.9").status_code == 200
    assert_error(fleet.device(car, "GET", "/api/v1/device/targets/bcm-1.0"), 403)
    adas = fleet.package("adas", "9.0", "adas-hw", b"adas")
    car.installed[bcm] = ("adas-9.0", adas["length"], adas["sha256"], 1)  # another ECU's kind
    assert fleet.send_manifest(car).status_code == 200
    assert_error(fleet.device(car, "GET", "/api/v1/device/targets/adas-9.0"), 403)


def test_scope_any_lets_every_vehicle_download_every_package(
    database_url: str, tmp_path: Path, backend: Backend
) -> None:
    backend.settings = make_settings(database_url, tmp_path / "data", device_download_scope="any")
    with TestClient(create_app(backend)) as client:
        fleet = Fleet(client)
        fleet.model()
        car = fleet.vehicle(1)
        fleet.package("adas", "2.0", "adas-hw", b"new adas")
        anything = fleet.device(car, "GET", "/api/v1/device/targets/adas-2.0")
        assert anything.status_code == 200 and anything.content == b"new adas"


def test_two_simultaneous_polls_never_race_the_director_publish(
    fleet: Fleet, car: SimVehicle, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll publishing the first offer while the same vehicle polls again and fetches
    its director metadata: the racers wait for the publish or find it done."""
    fleet.package("adas", "2.0", "adas-hw", b"new adas")
    start_campaign(fleet, "race", [car.vin], ["adas-2.0"])
    inside, release = threading.Event(), threading.Event()
    real_sync = director.sync

    def held_sync(*args: Any) -> None:
        if not inside.is_set():
            inside.set()
            release.wait()
        real_sync(*args)

    monkeypatch.setattr(director, "sync", held_sync)
    answers: dict[str, Any] = {}
    paths = {
        "first poll": "/api/v1/device/poll",
        "second poll": "/api/v1/device/poll",
        "metadata": f"/uptane/director/{car.vin}/timestamp.json",
    }

    def fetch(name: str) -> None:
        try:
            answers[name] = fleet.device(car, "GET", paths[name])
        except Exception as exc:  # the test client re-raises a server error
            answers[name] = exc

    first = threading.Thread(target=fetch, args=("first poll",))
    first.start()
    inside.wait()  # the first poll is publishing, inside its transaction
    racers = [
        threading.Thread(target=fetch, args=(name,)) for name in paths if name != "first poll"
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=1.0)  # a grace period to collide; they must wait or agree
    release.set()
    for thread in (first, *racers):
        thread.join()
    assert set(answers) == set(paths)
    for name, answer in answers.items():
        assert not isinstance(answer, Exception), (name, answer)
        assert answer.status_code == 200, (name, answer.text)
    assert answers["second poll"].json()["update"]["campaign"] == "race"
