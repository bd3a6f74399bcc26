"""Offline bundles end to end: built by the real backend (``redstone-cloud bundle`` and
``GET /api/v1/vehicles/<vin>/bundle``), verified by the vehicle's own reader and
TrustAdapter (``master.bundle.open_bundle``) with the roots a vehicle is provisioned
with, and refused in one line whenever anything about it is wrong."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from redstone_agent.errors import RedstoneError
from redstone_agent.master.bundle import open_bundle
from redstone_agent.master.cache import Cache
from redstone_agent.master.cache_server import CacheServer
from redstone_agent.master.ports import OfferedCampaign, VerifiedCampaign
from redstone_agent.master.topology import EcuKind, EcuSpec
from redstone_agent.uptane.errors import MetadataError
from redstone_agent.uptane.offline import MANIFEST, tar_stream
from redstone_agent.uptane.repository import Repository
from redstone_agent.uptane.simulator import new_repository
from redstone_agent.uptane.targetinfo import ImageFields
from redstone_agent.uptane.verifier import Clock, TrustedRoots, system_clock
from redstone_cloud.backend import Backend
from redstone_cloud.cli import main as cloud_cli
from tests.integration.cloud.fleet import ADMIN, Fleet, SimVehicle, publication_order
from tests.integration.cloud.server import write_config

IMAGES = {
    "adas-2": ("adas-hw", 2, b"adas two " * 3000),
    "bcm-1": ("bcm-hw", 1, b"bcm one " * 500),
    "bcm-2": ("bcm-hw", 2, b"bcm two " * 700),
}
NOTES = "https://oem.example/notes/spring"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    fleet: Fleet
    backend: Backend
    config: Path
    image_root: bytes
    cars: list[SimVehicle]
    tmp: Path

    def roots(self, car: SimVehicle) -> TrustedRoots:
        root = self.fleet.device(car, "GET", f"/uptane/director/{car.vin}/1.root.json")
        assert root.status_code == 200, root.text
        return TrustedRoots(root.content, self.image_root)

    def cli(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cloud_cli(["--config", str(self.config), "--json", *args])
        return code, out.getvalue(), err.getvalue()

    def bundle(self, car: SimVehicle, name: str = "car.rsbundle") -> Path:
        output = self.tmp / name
        code, out, err = self.cli("bundle", car.vin, "--output", str(output))
        assert code == 0, err
        summary = json.loads(out)
        assert summary["file"] == str(output) and summary["missing_rollback"] == []
        return output


def ecus_of(car: SimVehicle) -> list[EcuSpec]:
    """The car's topology as its Master is configured (the BCM is a UDS ECU on bcm-1)."""
    return [
        EcuSpec(f"{car.vin}-tbox", EcuKind.SELF, "tbox-hw"),
        EcuSpec(f"{car.vin}-adas", EcuKind.SUB, "adas-hw", instance_id=1),
        EcuSpec(
            f"{car.vin}-bcm",
            EcuKind.UDS_DOCAN,
            "bcm-hw",
            uds_config=Path("bcm.toml"),
            installed_target="bcm-1",
        ),
    ]


@pytest.fixture
def world(fleet: Fleet, backend: Backend, database_url: str, tmp_path: Path) -> World:
    """Two cars of the test model in one campaign; the cloud knows both BCMs run bcm-1."""
    fleet.model()
    image: Repository = new_repository("image")
    for target, (hardware_id, counter, data) in IMAGES.items():
        name, version = target.split("-")
        fleet.package(name, version, hardware_id, data, release_counter=counter)
        image.add_image(target, data, ImageFields((hardware_id,), counter))
    image.commit()
    files = image.files()
    for name in publication_order(files):
        fleet.ok("PUT", f"/api/v1/image-repo/{name}", content=files[name])
    cars = [fleet.vehicle(1), fleet.vehicle(2)]
    _, _, bcm_one = IMAGES["bcm-1"]
    for car in cars:
        car.installed[f"{car.vin}-bcm"] = ("bcm-1", len(bcm_one), sha(bcm_one), 1)
        assert fleet.send_manifest(car).status_code == 200
    config = write_config(tmp_path / "cloud.toml", database_url, backend.settings.data_dir)
    world = World(fleet, backend, config, files["1.root.json"], cars, tmp_path)
    spec = {
        "name": "spring",
        "targeting": {"vins": [c.vin for c in cars]},
        "packages": ["adas-2", "bcm-2"],
        "consent_required": True,
    }
    spec_file = tmp_path / "spring.json"
    spec_file.write_text(json.dumps(spec))
    assert world.cli("campaign", "create", str(spec_file), "--release-notes-url", NOTES)[0] == 0
    assert world.cli("campaign", "start", "spring")[0] == 0
    return world


def install(
    world: World,
    car: SimVehicle,
    path: Path,
    *,
    vin: str | None = None,
    clock: Clock = system_clock,
) -> tuple[OfferedCampaign, VerifiedCampaign]:
    """What the Master does with a bundle: open, verify, copy the images into its cache."""

    async def main() -> tuple[OfferedCampaign, VerifiedCampaign]:
        cache = Cache(world.tmp / f"cache-{car.vin}", 1 << 24)
        server = CacheServer(cache, "127.0.0.1", 0)
        await server.start()
        try:
            offer, trust = await open_bundle(
                path,
                vin=vin or car.vin,
                ecus=ecus_of(car),
                roots=world.roots(car),
                metadata_dir=world.tmp / f"uptane-{car.vin}",
                cache=cache,
                server=server,
                clock=clock,
            )
            plan = await trust.verify(offer, {f"{car.vin}-bcm": "bcm-1"})
            await trust.fetch(plan, lambda done, total: None)
            return offer, plan
        finally:
            await server.close()

    return asyncio.run(main())


def rewrite(source: Path, dest: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """The bundle with its members edited (what someone with the USB stick could do)."""
    with tarfile.open(source) as tar:
        members = {}
        for member in tar.getmembers():
            data = tar.extractfile(member)
            assert data is not None
            members[member.name] = data.read()
    change(members)
    items = [(n, len(d), lambda d=d: [d]) for n, d in members.items()]
    with dest.open("wb") as out:
        for chunk in tar_stream(items, 0):
            out.write(chunk)
    return dest


def refused(world: World, car: SimVehicle, path: Path, **kwargs: Any) -> str:
    with pytest.raises(RedstoneError) as failure:
        install(world, car, path, **kwargs)
    message = str(failure.value)
    assert "\n" not in message
    return message


# --- the good bundle ------------------------------------------------------------------------


def test_a_bundle_from_the_cli_installs_like_an_online_update(world: World) -> None:
    car = world.cars[0]
    path = world.bundle(car)
    offer, plan = install(world, car, path)
    adas, bcm = f"{car.vin}-adas", f"{car.vin}-bcm"
    assert offer == OfferedCampaign("spring", True, {adas: "adas-2", bcm: "bcm-2"}, NOTES)
    assert {s: (i.target, i.sha256) for s, i in plan.targets.items()} == {
        adas: ("adas-2", sha(IMAGES["adas-2"][2])),
        bcm: ("bcm-2", sha(IMAGES["bcm-2"][2])),
    }
    assert {s: i.target for s, i in plan.previous.items()} == {bcm: "bcm-1"}
    for image in [*plan.targets.values(), *plan.previous.values()]:
        assert image.path.read_bytes() == IMAGES[image.target][2]
        assert image.url.endswith(f"/targets/{image.sha256}")
    # the first bundle offered the update as a poll would, and the operator's act is audited
    rows = world.fleet.ok("GET", "/api/v1/campaigns/spring/vehicles")
    assert {r["vin"]: r["state"] for r in rows} == {
        car.vin: "offered",
        world.cars[1].vin: "pending",
    }
    audit = world.fleet.ok("GET", "/api/v1/audit", params={"action": "vehicle.bundle"})
    assert [a["object_id"] for a in audit] == [car.vin]


def test_the_admin_route_streams_the_same_kind_of_bundle(world: World, client: TestClient) -> None:
    car = world.cars[1]
    answer = client.get(f"/api/v1/vehicles/{car.vin}/bundle", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-tar"
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert f'filename="{car.vin}-spring.rsbundle"' in answer.headers["content-disposition"]
    path = world.tmp / "api.rsbundle"
    path.write_bytes(answer.content)
    offer, plan = install(world, car, path)
    assert offer.release_notes_url == NOTES and set(plan.targets) == {
        f"{car.vin}-adas",
        f"{car.vin}-bcm",
    }
    wrong = client.get(f"/api/v1/vehicles/{car.vin}/bundle?campaign=autumn", headers=ADMIN)
    assert wrong.status_code == 409 and "is in campaign 'spring', not 'autumn'" in wrong.text
    unknown = client.get("/api/v1/vehicles/RSTEST99999999999/bundle", headers=ADMIN)
    assert unknown.status_code == 404


def test_a_vehicle_without_an_assignment_gets_one_line(world: World) -> None:
    world.fleet.vehicle(3)
    code, out, err = world.cli("bundle", "RSTEST00000000003", "--output", str(world.tmp / "x"))
    assert code == 1 and out == ""
    assert err.strip().endswith(
        "vehicle RSTEST00000000003 has no assignment in a running campaign: nothing to bundle"
    )
    assert len(err.strip().splitlines()) == 1
    assert not (world.tmp / "x").exists()


# --- refused bundles --------------------------------------------------------------------------


def test_a_flipped_target_byte_is_refused(world: World) -> None:
    car = world.cars[0]
    name = f"targets/{sha(IMAGES['adas-2'][2])}"

    def flip(members: dict[str, bytes]) -> None:
        data = bytearray(members[name])
        data[len(data) // 2] ^= 0x01
        members[name] = bytes(data)

    path = rewrite(world.bundle(car), world.tmp / "flipped", flip)
    assert "adas-2: content does not match the verified sha256" in refused(world, car, path)


def test_tampered_metadata_is_refused(world: World) -> None:
    car = world.cars[0]

    def tamper(members: dict[str, bytes]) -> None:
        name = max(
            (n for n in members if n.startswith("director/") and n.endswith(".targets.json")),
            key=lambda n: int(n.split("/")[1].split(".")[0]),
        )
        doc = json.loads(members[name])
        doc["signed"]["expires"] = "2099-01-01T00:00:00Z"  # a longer life: not signed so
        members[name] = json.dumps(doc, separators=(",", ":")).encode()

    path = rewrite(world.bundle(car), world.tmp / "tampered", tamper)
    with pytest.raises(MetadataError, match="director repository"):
        install(world, car, path)


def test_a_bundle_for_another_vehicle_is_refused(world: World) -> None:
    mine, other = world.cars
    theirs = world.bundle(other, "other.rsbundle")
    assert refused(world, mine, theirs) == f"bundle is for vehicle {other.vin}, this is {mine.vin}"

    def relabel(members: dict[str, bytes]) -> None:
        doc = json.loads(members[MANIFEST])
        doc["vin"] = mine.vin  # the manifest is not signed; the director's ECU serials are
        members[MANIFEST] = json.dumps(doc).encode()

    disguised = rewrite(theirs, world.tmp / "disguised", relabel)
    message = refused(world, mine, disguised)
    assert message.startswith(f"bundle is not for this vehicle ({mine.vin}): its director assigns")
    assert f"{other.vin}-adas" in message


def test_a_bundle_with_a_target_removed_names_it(world: World) -> None:
    car = world.cars[0]

    def remove(members: dict[str, bytes]) -> None:
        del members[f"targets/{sha(IMAGES['bcm-2'][2])}"]

    path = rewrite(world.bundle(car), world.tmp / "short", remove)
    assert refused(world, car, path).startswith("bundle lacks target bcm-2 (sha256 ")


def test_expired_metadata_is_refused(world: World) -> None:
    car = world.cars[0]

    def two_days_on() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=2)

    with pytest.raises(MetadataError, match="ExpiredMetadataError"):
        install(world, car, world.bundle(car), clock=two_days_on)


def test_the_manifest_names_the_campaign_and_when_the_bundle_expires(world: World) -> None:
    car = world.cars[0]
    members: dict[str, bytes] = {}
    rewrite(world.bundle(car), world.tmp / "copy", members.update)
    names = list(members)
    doc = json.loads(members[MANIFEST])
    assert names[0] == MANIFEST
    assert doc["vin"] == car.vin and doc["campaign"] == "spring" and doc["consent_required"]
    assert doc["release_notes_url"] == NOTES
    timestamps = [json.loads(members[f"{r}/timestamp.json"]) for r in ("director", "image")]
    earliest = min(dt.datetime.fromisoformat(t["signed"]["expires"]) for t in timestamps)
    assert dt.datetime.fromisoformat(doc["expires"]) == earliest  # the 1-day timestamps
    assert {n.split("/")[0] for n in names} == {MANIFEST, "director", "image", "targets"}
    assert sorted(n for n in names if n.startswith("targets/")) == sorted(
        f"targets/{sha(d)}" for _, _, d in IMAGES.values()
    )
