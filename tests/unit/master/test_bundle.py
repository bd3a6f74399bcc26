"""master.bundle: a USB bundle's campaign through the same TrustAdapter as an online one,
with a real cache and cache server (what Subs and UDS ports get must not differ)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from redstone_agent.master.bundle import open_bundle
from redstone_agent.master.cache import Cache
from redstone_agent.master.cache_server import CacheServer
from redstone_agent.master.ports import Fetched, OfferedCampaign, TrustPort, VerifiedCampaign
from redstone_agent.master.topology import EcuKind, EcuSpec
from redstone_agent.uptane.bundle import MetadataBundle
from redstone_agent.uptane.errors import OfflineBundleError, UptaneError
from redstone_agent.uptane.offline import (
    MANIFEST,
    BundleManifest,
    metadata_member,
    tar_stream,
    target_member,
)
from redstone_agent.uptane.simulator import UptaneSimulator

T = TypeVar("T")
VIN = "RSTEST00000000001"
ECUS = [
    EcuSpec("TBOX-1", EcuKind.SELF, "hw-tbox"),
    EcuSpec("ADAS-1", EcuKind.SUB, "hw-adas", instance_id=1),
    EcuSpec(
        "BCM-1", EcuKind.UDS_DOCAN, "hw-bcm", uds_config=Path("bcm.toml"), installed_target="bcm-1"
    ),
]
IMAGES = {"adas-2": b"adas two" * 100, "bcm-1": b"bcm one" * 50, "bcm-2": b"bcm two" * 60}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sim() -> UptaneSimulator:
    sim = UptaneSimulator.create()
    sim.add_image("adas-2", IMAGES["adas-2"], ["hw-adas"], 2, extra={"version": "2.0"})
    sim.add_image("bcm-1", IMAGES["bcm-1"], ["hw-bcm"], 1)
    sim.add_image("bcm-2", IMAGES["bcm-2"], ["hw-bcm"], 2)
    sim.assign("ADAS-1", "hw-adas", "adas-2", commit=False)
    sim.assign("BCM-1", "hw-bcm", "bcm-2")
    return sim


def write_bundle(path: Path, sim: UptaneSimulator, *, without: str = "") -> Path:
    manifest = BundleManifest(VIN, "spring", consent_required=True, release_notes_url="https://n")
    members = {MANIFEST: manifest.to_bytes()}
    for name, repo in (("director", sim.director), ("image", sim.image)):
        for filename, data in repo.files().items():
            if filename != "root.json":
                members[metadata_member(name, filename)] = data
    for target, data in IMAGES.items():
        if target != without:
            members[target_member(sha(data))] = data
    items = [(n, len(d), lambda d=d: [d]) for n, d in members.items()]
    with path.open("wb") as out:
        for chunk in tar_stream(items, 0):
            out.write(chunk)
    return path


async def open_for(
    bundle: Path,
    sim: UptaneSimulator,
    tmp_path: Path,
    cache: Cache,
    server: CacheServer,
    *,
    vin: str = VIN,
) -> tuple[OfferedCampaign, TrustPort]:
    """open_bundle for :data:`ECUS`, pinned to ``sim``'s roots."""
    return await open_bundle(
        bundle,
        vin=vin,
        ecus=ECUS,
        roots=sim.trusted_roots(),
        metadata_dir=tmp_path / "uptane",
        cache=cache,
        server=server,
    )


def run(work: Callable[[Cache, CacheServer], Awaitable[T]], tmp_path: Path) -> T:
    async def main() -> T:
        cache = Cache(tmp_path / "cache", 1 << 20)
        server = CacheServer(cache, "127.0.0.1", 0)
        await server.start()
        try:
            return await work(cache, server)
        finally:
            await server.close()

    return asyncio.run(main())


def test_a_bundle_campaign_is_verified_and_fetched_like_an_online_one(
    sim: UptaneSimulator, tmp_path: Path
) -> None:
    bundle = write_bundle(tmp_path / "b.tar", sim)

    async def work(
        cache: Cache, server: CacheServer
    ) -> tuple[OfferedCampaign, VerifiedCampaign, dict[str, Fetched], str]:
        offer, trust = await open_for(bundle, sim, tmp_path, cache, server)
        plan = await trust.verify(offer, {"BCM-1": "bcm-1"})
        fetched = await trust.fetch(plan, lambda done, total: None)
        return offer, plan, dict(fetched), server.target_url("")

    offer, plan, fetched, base = run(work, tmp_path)
    assert offer == OfferedCampaign(
        "spring", True, {"ADAS-1": "adas-2", "BCM-1": "bcm-2"}, "https://n"
    )
    assert {s: (i.target, i.sha256, i.version) for s, i in plan.targets.items()} == {
        "ADAS-1": ("adas-2", sha(IMAGES["adas-2"]), "2.0"),
        "BCM-1": ("bcm-2", sha(IMAGES["bcm-2"]), "bcm-2"),
    }
    assert {s: i.target for s, i in plan.previous.items()} == {"BCM-1": "bcm-1"}
    assert plan.targets["ADAS-1"].url == base + sha(IMAGES["adas-2"])
    assert set(MetadataBundle.from_bytes(plan.bundle).repositories) == {"director", "image"}
    for image in [*plan.targets.values(), *plan.previous.values()]:
        assert image.path.read_bytes() == IMAGES[image.target]
    assert fetched == {
        "ADAS-1": Fetched(len(IMAGES["adas-2"])),
        "BCM-1": Fetched(len(IMAGES["bcm-2"]) + len(IMAGES["bcm-1"])),  # and its rollback image
    }


def test_a_missing_rollback_image_fails_the_verification(
    sim: UptaneSimulator, tmp_path: Path
) -> None:
    bundle = write_bundle(tmp_path / "b.tar", sim, without="bcm-1")

    async def work(cache: Cache, server: CacheServer) -> None:
        offer, trust = await open_for(bundle, sim, tmp_path, cache, server)
        await trust.verify(offer, {"BCM-1": "bcm-1"})

    with pytest.raises(OfflineBundleError, match="bundle lacks target bcm-1 "):
        run(work, tmp_path)


def test_open_refuses_another_vehicles_bundle(sim: UptaneSimulator, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b.tar", sim)

    async def work(cache: Cache, server: CacheServer) -> None:
        await open_for(bundle, sim, tmp_path, cache, server, vin="RSTEST00000000002")

    with pytest.raises(UptaneError, match=f"bundle is for vehicle {VIN}, this is RSTEST0+2$"):
        run(work, tmp_path)
