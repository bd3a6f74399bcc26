"""A delta install is confirmed by the image it built, which then sources the next delta.

The director names the delta file D for the ECU; a Sub that applied it reports
(filename D, the built image's sha256 R and length). The backend's plan holds
the image package, so R settles the assignment — and R, stored as the ECU's
installed image, is what the next delta offer is looked up by.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from redstone_agent.uptane.repository import Repository
from redstone_agent.uptane.targetinfo import ImageFields
from redstone_cloud.backend import Backend
from redstone_cloud.services import deltas
from tests.integration.cloud.fleet import Fleet, SimVehicle
from tests.integration.cloud.test_api_campaigns import director_targets
from tests.integration.cloud.test_image_repo_and_deltas import new_repo, publish


def sign_delta(fleet: Fleet, repo: Repository, delta: dict[str, Any], source: bytes) -> None:
    """The OEM signs the delta in the (offline) image repository, as a delta of ``source``."""
    fields = ImageFields(
        ("tbox-hw",),
        delta["release_counter"],
        delta_source_sha256=hashlib.sha256(source).hexdigest(),
    )
    repo.add_target(
        delta["target"], length=delta["length"], sha256=delta["sha256"], custom=fields.to_custom()
    )
    repo.commit()
    publish(fleet, repo.files())


def delta_to(fleet: Fleet, version: str) -> dict[str, Any]:
    return next(
        p
        for p in fleet.ok("GET", "/api/v1/packages")
        if p["kind"] == "delta" and p["version"].startswith(f"{version}-from-")
    )


def run_campaign(fleet: Fleet, car: SimVehicle, name: str, package: str) -> dict[str, Any]:
    campaign = {"name": name, "targeting": {"vins": [car.vin]}, "packages": [package]}
    fleet.ok("POST", "/api/v1/campaigns", json=campaign)
    fleet.ok("POST", "/api/v1/campaigns/" + name + "/start")
    fleet.poll(car)  # the offer: director metadata is signed now
    return director_targets(fleet, car)


def assignment_after(fleet: Fleet, car: SimVehicle) -> str | None:
    """Send the vehicle's manifest; the assignment's state afterwards (None: no assignment)."""
    response = fleet.send_manifest(car)
    assert response.status_code == 200, response.text
    state: str | None = response.json()["assignment"]
    return state


@pytest.mark.slow
def test_a_manifest_reporting_the_built_image_settles_a_delta_assignment(
    fleet: Fleet, backend: Backend
) -> None:
    rng = random.Random(11)
    v1 = rng.randbytes(200_000)
    v2 = bytearray(v1)
    v2[5000:5010] = b"0123456789"
    v2 += rng.randbytes(3000)
    v3 = bytes(v2[:100_000]) + rng.randbytes(500) + bytes(v2[100_500:])
    fleet.model()
    fleet.package("tbox", "1.0", "tbox-hw", v1, release_counter=1)
    fleet.package("tbox", "2.0", "tbox-hw", bytes(v2), release_counter=2)
    assert deltas.run_pending(backend.sessions, backend.store) == [(1, "done")]
    car = fleet.vehicle(1)
    car.installed[car.primary] = ("tbox-1.0", len(v1), hashlib.sha256(v1).hexdigest(), 1)
    assert assignment_after(fleet, car) is None
    repo = new_repo()
    delta = delta_to(fleet, "2.0")
    sign_delta(fleet, repo, delta, v1)

    assert list(run_campaign(fleet, car, "to-2", "tbox-2.0")) == [delta["target"]]

    # Reporting the delta file's own hash is not running an image: still offered.
    car.installed[car.primary] = (delta["target"], delta["length"], delta["sha256"], 2)
    assert assignment_after(fleet, car) == "offered"
    # What a Sub reports after applying the delta: the target name, the built image.
    r = hashlib.sha256(v2).hexdigest()
    car.installed[car.primary] = (delta["target"], len(v2), r, 2)
    assert assignment_after(fleet, car) == "succeeded"
    vehicle = fleet.ok("GET", f"/api/v1/vehicles/{car.vin}")
    tbox = next(e for e in vehicle["ecus"] if e["serial"] == car.primary)
    assert tbox["installed_sha256"] == r

    # R is the ECU's installed image: the next campaign offers the delta from it.
    fleet.package("tbox", "3.0", "tbox-hw", v3, release_counter=3)
    assert {state for _, state in deltas.run_pending(backend.sessions, backend.store)} == {"done"}
    delta3 = next(p for p in fleet.ok("GET", "/api/v1/packages") if p["version"] == "3.0-from-2.0")
    sign_delta(fleet, repo, delta3, bytes(v2))

    targets = run_campaign(fleet, car, "to-3", "tbox-3.0")

    assert list(targets) == [delta3["target"]]
    assert targets[delta3["target"]]["delta_source_sha256"] == r
    car.installed[car.primary] = (delta3["target"], len(v3), hashlib.sha256(v3).hexdigest(), 3)
    assert assignment_after(fleet, car) == "succeeded"


@pytest.mark.slow
def test_a_uds_ecu_is_offered_the_whole_image_even_when_a_signed_delta_exists(
    fleet: Fleet, backend: Backend
) -> None:
    # A UDS ECU is flashed with whole images (so is a boot-script copy): a delta
    # offered to it would be flashed as if it were the image. The images go up
    # before any model names bcm-hw as a UDS ECU, so the cloud makes the delta.
    rng = random.Random(12)
    v1 = rng.randbytes(100_000)
    v2 = v1[:40_000] + b"new calibration" + v1[40_015:]
    fleet.package("bcm", "1.0", "bcm-hw", v1, release_counter=1)
    fleet.package("bcm", "2.0", "bcm-hw", v2, release_counter=2)
    assert deltas.run_pending(backend.sessions, backend.store) == [(1, "done")]
    fleet.model()
    car = fleet.vehicle(1)
    bcm = next(serial for serial, hw in car.hardware.items() if hw == "bcm-hw")
    car.installed[bcm] = ("bcm-1.0", len(v1), hashlib.sha256(v1).hexdigest(), 1)
    assert assignment_after(fleet, car) is None
    sign_delta(fleet, new_repo(), delta_to(fleet, "2.0"), v1)

    targets = run_campaign(fleet, car, "bcm-to-2", "bcm-2.0")

    assert list(targets) == ["bcm-2.0"]
    assert "delta_source_sha256" not in targets["bcm-2.0"]


def test_no_delta_is_made_for_hardware_only_uds_ecus_have(fleet: Fleet, backend: Backend) -> None:
    # The director never offers such a delta (above), so making it is wasted work.
    rng = random.Random(13)
    v1 = rng.randbytes(100_000)
    v2 = v1[:40_000] + b"new calibration" + v1[40_015:]
    fleet.model()
    fleet.package("bcm", "1.0", "bcm-hw", v1, release_counter=1)
    fleet.package("bcm", "2.0", "bcm-hw", v2, release_counter=2)
    a1 = rng.randbytes(100_000)
    fleet.package("adas", "1.0", "adas-hw", a1, release_counter=1)
    fleet.package("adas", "2.0", "adas-hw", a1[:500] + b"new" + a1[503:], release_counter=2)

    made = deltas.run_pending(backend.sessions, backend.store)

    with backend.sessions() as session:
        jobs = deltas.list_jobs(session)
    assert [(j["from_target"], j["to_target"]) for j in jobs] == [("adas-1.0", "adas-2.0")]
    assert [state for _, state in made] == ["done"]
