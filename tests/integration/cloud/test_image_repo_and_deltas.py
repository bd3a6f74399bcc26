"""Image repository uploads (offline-signed) and background deltas offered by the director."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tuf.api.metadata import Metadata

from redstone_agent.delta import apply_delta
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.repository import Repository, RoleKeys
from redstone_agent.uptane.targetinfo import ImageFields
from redstone_cloud.api.app import create_app
from redstone_cloud.backend import Backend, open_backend
from redstone_cloud.services import deltas, packages
from tests.integration.cloud.conftest import make_settings
from tests.integration.cloud.fleet import Fleet, publication_order
from tests.integration.cloud.test_api_campaigns import director_targets

ROLES = ("root", "targets", "snapshot", "timestamp")


def publish(fleet: Fleet, files: dict[str, bytes], skip: set[str] = frozenset()) -> None:
    for name in publication_order(files):
        if name in skip:
            continue
        response = fleet.admin("PUT", f"/api/v1/image-repo/{name}", content=files[name])
        assert response.status_code in (201, 409), (name, response.text)


def new_repo() -> Repository:
    return Repository.create("image", {role: RoleKeys([generate_signer()]) for role in ROLES})


def test_image_repo_upload_checks_signatures_and_order(fleet: Fleet, client: TestClient) -> None:
    repo = new_repo()
    files = repo.files()
    early = fleet.admin("PUT", "/api/v1/image-repo/1.targets.json", content=files["1.targets.json"])
    assert early.status_code == 422 and "1.root.json" in early.json()["error"]
    forged = json.loads(files["1.root.json"])
    forged["signed"]["expires"] = "2099-01-01T00:00:00Z"
    response = fleet.admin(
        "PUT", "/api/v1/image-repo/1.root.json", content=json.dumps(forged).encode()
    )
    assert response.status_code == 422
    misnamed = fleet.admin("PUT", "/api/v1/image-repo/2.root.json", content=files["1.root.json"])
    assert misnamed.status_code == 422
    assert fleet.admin("PUT", "/api/v1/image-repo/1.root.json", content=b"{}").status_code == 422
    publish(fleet, files)
    stranger = new_repo().files()
    assert (
        fleet.admin(
            "PUT", "/api/v1/image-repo/timestamp.json", content=stranger["timestamp.json"]
        ).status_code
        == 422
    )
    again = fleet.admin("PUT", "/api/v1/image-repo/1.targets.json", content=files["1.targets.json"])
    assert again.status_code == 409
    repo.add_image("tbox-1.0", b"t", ImageFields(("tbox-hw",), 1))
    repo.commit()
    publish(fleet, repo.files())
    listed = {row["name"]: row["version"] for row in fleet.ok("GET", "/api/v1/image-repo")}
    assert listed["2.targets.json"] == 2 and listed["timestamp.json"] == 2
    fleet.model()
    car = fleet.vehicle(1)
    served = fleet.device(car, "GET", "/uptane/image/2.targets.json")
    assert "tbox-1.0" in Metadata.from_bytes(served.content).signed.targets
    assert fleet.device(car, "GET", "/uptane/image/root.json").content == files["1.root.json"]
    assert fleet.device(car, "GET", "/uptane/image/9.targets.json").status_code == 404
    assert client.get("/uptane/image/root.json").status_code == 401


@pytest.mark.slow
def test_background_delta_is_offered_once_signed(fleet: Fleet, backend: Backend) -> None:
    rng = random.Random(7)
    old = rng.randbytes(300_000)
    new = bytearray(old)
    new[1000:1010] = b"0123456789"
    new += rng.randbytes(5000)
    fleet.model()
    fleet.package("tbox", "1.0", "tbox-hw", old, release_counter=1)
    fleet.package("tbox", "2.0", "tbox-hw", bytes(new), release_counter=2)
    assert deltas.run_pending(backend.sessions, backend.store) == [(1, "done")]
    delta = next(p for p in fleet.ok("GET", "/api/v1/packages") if p["kind"] == "delta")
    assert delta["base_target"] == "tbox-1.0"
    assert delta["length"] < len(new) // 4
    car = fleet.vehicle(1)
    car.installed[car.primary] = ("tbox-1.0", len(old), hashlib.sha256(old).hexdigest(), 1)
    assert fleet.send_manifest(car).status_code == 200
    repo = new_repo()
    publish(fleet, repo.files())
    campaign = {"name": "c", "targeting": {"vins": [car.vin]}, "packages": ["tbox-2.0"]}
    fleet.ok("POST", "/api/v1/campaigns", json=campaign)
    fleet.ok("POST", "/api/v1/campaigns/c/start")
    fleet.poll(car)
    assert set(director_targets(fleet, car)) == {"tbox-2.0"}, "unsigned delta must not be offered"
    fleet.ok("POST", "/api/v1/campaigns/c/pause", json={})
    fields = ImageFields(("tbox-hw",), 2, delta_source_sha256=hashlib.sha256(old).hexdigest())
    repo.add_target(
        delta["target"], length=delta["length"], sha256=delta["sha256"], custom=fields.to_custom()
    )
    repo.commit()
    publish(fleet, repo.files())
    fleet.ok("POST", "/api/v1/campaigns/c/resume")
    fleet.poll(car)
    targets = director_targets(fleet, car)
    assert list(targets) == [delta["target"]]
    assert targets[delta["target"]]["delta_source_sha256"] == hashlib.sha256(old).hexdigest()
    data = fleet.device(car, "GET", f"/api/v1/device/targets/{delta['target']}").content
    rebuilt = io.BytesIO()
    apply_delta(io.BytesIO(data), io.BytesIO(old), rebuilt)
    assert rebuilt.getvalue() == bytes(new)


@pytest.mark.slow
def test_failed_delta_job_is_recorded(fleet: Fleet, backend: Backend) -> None:
    fleet.package("bcm", "1.0", "bcm-hw", b"a" * 5000)
    fleet.package("bcm", "2.0", "bcm-hw", b"b" * 5000)
    (backend.settings.blob_dir / "packages" / "bcm" / "1.0").unlink()
    assert deltas.run_pending(backend.sessions, backend.store) == [(1, "failed")]
    jobs = fleet.ok("GET", "/api/v1/deltas")
    assert jobs[0]["state"] == "failed" and "missing" in jobs[0]["error"]


@pytest.mark.slow
def test_delta_jobs_are_made_once_per_content_and_kept_only_when_they_save(
    fleet: Fleet, backend: Backend
) -> None:
    """Several uploads of the same bytes need one delta; a delta of unrelated bytes is no
    smaller than the image, so its job ends skipped with the reason and no delta package;
    two workers empty the queue together."""
    rng = random.Random(11)
    base = rng.randbytes(200_000)
    patched = base[:5000] + b"fix" + base[5003:]
    fleet.package("body", "1.0", "body-hw", base, release_counter=1)
    fleet.package("body", "1.0-rebuild", "body-hw", base, release_counter=1)  # same bytes
    fleet.package("body", "1.1", "body-hw", patched, release_counter=2)
    fleet.package("body", "1.1-again", "body-hw", patched, release_counter=2)
    fleet.package("body", "2.0", "body-hw", rng.randbytes(200_000), release_counter=3)
    pairs = [(job["from_target"], job["to_target"]) for job in fleet.ok("GET", "/api/v1/deltas")]
    # 1.1 needs one delta from the 1.0 content; 1.1-again none (1.1 is its bytes, and the
    # job from 1.0 already makes them); 2.0 one per distinct earlier content.
    assert pairs == [
        ("body-1.0-rebuild", "body-1.1"),
        ("body-1.1-again", "body-2.0"),
        ("body-1.0-rebuild", "body-2.0"),
    ]
    ran = deltas.run_pending(backend.sessions, backend.store, workers=2, min_saving=0.1)
    assert sorted(ran) == [(1, "done"), (2, "skipped"), (3, "skipped")]
    jobs = {job["id"]: job for job in fleet.ok("GET", "/api/v1/deltas")}
    assert jobs[1]["delta_length"] < jobs[1]["full_length"] // 10
    skipped = jobs[2]
    assert skipped["state"] == "skipped" and skipped["delta_target"] is None
    assert "not 10% smaller than the full image (200000 B)" in skipped["error"]
    kinds = [p["kind"] for p in fleet.ok("GET", "/api/v1/packages")]
    assert kinds.count("delta") == 1
    with backend.sessions() as session:
        again = packages.get_package(session, "body-1.1-again")
        made = packages.delta_for(session, hashlib.sha256(base).hexdigest(), again)
        assert made is not None and made.target.startswith("body-1.1.from-")


def test_development_online_key_signs_uploads(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path / "d", image_online_key=tmp_path / "image.pem")
    backend = open_backend(settings)
    try:
        with TestClient(create_app(backend)) as client:
            fleet = Fleet(client)
            fleet.package("tbox", "1.0", "tbox-hw", b"one", release_counter=1)
            fleet.package("adas", "1.0", "adas-hw", b"two", release_counter=4)
            fleet.model()
            car = fleet.vehicle(1)
            root = Metadata.from_bytes(fleet.device(car, "GET", "/uptane/image/root.json").content)
            timestamp = fleet.device(car, "GET", "/uptane/image/timestamp.json").content
            snapshot_version = Metadata.from_bytes(timestamp).signed.snapshot_meta.version
            snapshot = fleet.device(car, "GET", f"/uptane/image/{snapshot_version}.snapshot.json")
            version = Metadata.from_bytes(snapshot.content).signed.meta["targets.json"].version
            raw = fleet.device(car, "GET", f"/uptane/image/{version}.targets.json").content
            targets = Metadata.from_bytes(raw)
            root.signed.verify_delegate("targets", targets.signed_bytes, targets.signatures)
            custom = {name: t.custom for name, t in targets.signed.targets.items()}
            assert custom == {
                "tbox-1.0": {"hardware_ids": ["tbox-hw"], "release_counter": 1},
                "adas-1.0": {"hardware_ids": ["adas-hw"], "release_counter": 4},
            }
    finally:
        backend.close()


def test_a_campaign_queues_the_deltas_its_ecus_need_once_each(
    fleet: Fleet, backend: Backend
) -> None:
    """An upload queues deltas from the three newest earlier images only, but half the
    fleet still runs 1.0. Starting a campaign to 1.4 queues 1.0 -> 1.4 once for every
    vehicle on 1.0; nothing for a vehicle on 1.3 (the upload covered it) or on a build
    the cloud holds no image of (no source: it downloads the full image)."""
    rng = random.Random(5)
    base = rng.randbytes(60_000)
    uploaded: list[dict[str, object]] = []
    for minor in range(5):
        data = base[: 1000 * minor] + b"v%d" % minor + base[1000 * minor + 2 :]
        uploaded.append(
            fleet.package("adas", f"1.{minor}", "adas-hw", data, release_counter=minor + 1)
        )
    before = {(job["from_target"], job["to_target"]) for job in fleet.ok("GET", "/api/v1/deltas")}
    assert ("adas-1.0", "adas-1.4") not in before
    fleet.model()
    cars = [fleet.vehicle(n) for n in (1, 2, 3, 4)]
    running = {0: uploaded[0], 1: uploaded[0], 2: uploaded[3]}
    for index, car in enumerate(cars):
        adas = next(serial for serial, hw in car.hardware.items() if hw == "adas-hw")
        if index in running:
            image = running[index]
            car.installed[adas] = (
                str(image["target"]),
                int(str(image["length"])),
                str(image["sha256"]),
                int(str(image["release_counter"])),
            )
        else:
            car.installed[adas] = ("adas-custom", 7, hashlib.sha256(b"custom").hexdigest(), 1)
        assert fleet.send_manifest(car).status_code == 200
    spec = {
        "name": "adas-14",
        "targeting": {"vins": [car.vin for car in cars]},
        "packages": ["adas-1.4"],
    }
    fleet.ok("POST", "/api/v1/campaigns", json=spec)
    started = fleet.ok("POST", "/api/v1/campaigns/adas-14/start")
    assert started["vehicles"] == 4
    assert started["deltas_queued"] == 1
    after = [(job["from_target"], job["to_target"]) for job in fleet.ok("GET", "/api/v1/deltas")]
    assert set(after) - before == {("adas-1.0", "adas-1.4")}
    assert len(after) == len(before) + 1
    audit = fleet.ok("GET", "/api/v1/audit", params={"action": "campaign.start"})
    assert audit[0]["detail"]["deltas_queued"] == 1


def test_a_job_a_worker_holds_says_for_how_long(fleet: Fleet, backend: Backend) -> None:
    rng = random.Random(3)
    base = rng.randbytes(80_000)
    fleet.package("gw", "1.0", "gw-hw", base, release_counter=1)
    fleet.package("gw", "1.1", "gw-hw", base[:-9] + b"123456789", release_counter=2)
    fleet.package("gw", "1.2", "gw-hw", base[:-5] + b"abcde", release_counter=3)
    with backend.sessions() as session, session.begin():
        held = deltas.claim(session)  # another worker's job, taken a moment ago
        assert held is not None
        held_id = held.id
    listed = {job["id"]: job for job in fleet.ok("GET", "/api/v1/deltas")}
    assert listed[held_id]["state"] == "running"
    assert isinstance(listed[held_id]["running_s"], int) and listed[held_id]["running_s"] >= 0
    assert [j["running_s"] for i, j in listed.items() if i != held_id] == [None, None]
