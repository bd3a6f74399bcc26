"""A published image repository + director on disk, served by a real local HTTP server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from redstone_agent.journal import atomic_write
from redstone_agent.retry import RetryPolicy
from redstone_agent.uptane.fetcher import FetchLimits
from redstone_agent.uptane.primary import PrimaryConfig, PrimaryVerifier
from redstone_agent.uptane.simulator import UptaneSimulator
from redstone_agent.uptane.targetinfo import published_name
from tests.integration.uptane.httpserver import FaultyServer, serve

IMAGE = b"brake controller firmware " * 4000  # ~100 KiB, several chunks


@dataclass
class Published:
    sim: UptaneSimulator
    root: Path
    server: FaultyServer

    def publish(self) -> None:
        for name, repo in (("image", self.sim.image), ("director", self.sim.director)):
            for file, data in repo.files().items():
                atomic_write(self.root / name / "metadata" / file, data)
        for path, data in self.sim.blobs.items():
            name = published_name(path, hashlib.sha256(data).hexdigest())
            atomic_write(self.root / "image" / "targets" / name, data)

    def verifier(self, cache: Path, **limits: float) -> PrimaryVerifier:
        config = PrimaryConfig(
            director_url=f"{self.server.url}/director/metadata/",
            image_url=f"{self.server.url}/image/metadata/",
            image_targets_url=f"{self.server.url}/image/targets/",
            cache_dir=cache,
            retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, timeout=2.0),
            limits=FetchLimits(**limits),
        )
        return PrimaryVerifier(config, self.sim.trusted_roots())


@pytest.fixture
def published(tmp_path: Path) -> Iterator[Published]:
    sim = UptaneSimulator.create()
    sim.delegate("supplier-brakes", ["brakes/*"])
    sim.add_image("brakes/abs-1.4.bin", IMAGE, ["hw-abs"], 3, role="supplier-brakes")
    sim.add_image("tbox/tbox.img", b"tbox", ["hw-tbox"], 1)
    sim.assign("ABS-1", "hw-abs", "brakes/abs-1.4.bin", commit=False)
    sim.assign("TBOX-1", "hw-tbox", "tbox/tbox.img")
    root = tmp_path / "www"
    with serve(root) as server:
        site = Published(sim, root, server)
        site.publish()
        yield site
