"""An in-memory image repository + director pair: for tests, benchmarks and demos.

Other packages' tests (Sub, backend) use it to get genuinely signed metadata
bundles without files or servers::

    sim = UptaneSimulator.create()
    sim.add_image("ecu-a-1.0.bin", b"...", hardware_ids=["hw-a"], release_counter=1)
    sim.assign("ECU-A1", "hw-a", "ecu-a-1.0.bin")
    bundle = sim.bundle()            # MetadataBundle, as a Primary forwards it
    roots = sim.trusted_roots()      # what an ECU stores at manufacture
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redstone_agent.uptane.bundle import DIRECTOR, IMAGE, MetadataBundle, RepositoryMetadata
from redstone_agent.uptane.keys import Algorithm, generate_signer
from redstone_agent.uptane.repository import (
    TOP_LEVEL,
    Assignment,
    Clock,
    Repository,
    RoleKeys,
    utc_now,
)
from redstone_agent.uptane.targetinfo import ImageFields
from redstone_agent.uptane.tufapi import Signer
from redstone_agent.uptane.verifier import TrustedRoots


def new_repository(
    name: str, algorithm: Algorithm = "ed25519", clock: Clock = utc_now
) -> Repository:
    """A repository with one fresh key (threshold 1) per top-level role."""
    keys = {role: RoleKeys([generate_signer(algorithm)]) for role in TOP_LEVEL}
    return Repository.create(name, keys, clock=clock)


def repository_metadata(repo: Repository) -> RepositoryMetadata:
    """The repository's current state as a bundle entry."""
    return RepositoryMetadata(tuple(repo.roots), repo.role_files())


@dataclass
class UptaneSimulator:
    image: Repository
    director: Repository
    assignments: dict[str, Assignment] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def create(cls, algorithm: Algorithm = "ed25519", clock: Clock = utc_now) -> UptaneSimulator:
        return cls(
            new_repository(IMAGE, algorithm, clock), new_repository(DIRECTOR, algorithm, clock)
        )

    def delegate(self, supplier: str, paths: Sequence[str], signer: Signer | None = None) -> Signer:
        """Delegate ``paths`` to a supplier role; returns the supplier's signer."""
        signer = signer or generate_signer()
        self.image.delegate(supplier, RoleKeys([signer]), paths)
        self.image.commit()
        return signer

    def add_image(
        self,
        path: str,
        data: bytes,
        hardware_ids: Sequence[str],
        release_counter: int,
        *,
        role: str = "targets",
        delta_source_sha256: str | None = None,
        extra: dict[str, Any] | None = None,
        commit: bool = True,
    ) -> None:
        fields = ImageFields(tuple(hardware_ids), release_counter, delta_source_sha256, extra or {})
        self.image.add_image(path, data, fields, role)
        self.blobs[path] = data
        if commit:
            self.image.commit()

    def assign(
        self,
        ecu_serial: str,
        hardware_id: str,
        path: str,
        *,
        release_counter: int | None = None,
        data: bytes | None = None,
        delta_source_sha256: str | None = None,
        commit: bool = True,
    ) -> Assignment:
        """Director assigns ``path``; length/hash/counter default to the image's own."""
        blob = data if data is not None else self.blobs[path]
        counter = release_counter
        if counter is None:
            counter = ImageFields.from_target(self.image.find_target(path)).release_counter
        item = Assignment(
            ecu_serial,
            hardware_id,
            path,
            len(blob),
            hashlib.sha256(blob).hexdigest(),
            counter,
            delta_source_sha256,
        )
        self.assignments[ecu_serial] = item
        if commit:
            self.commit_director()
        return item

    def commit_director(self) -> None:
        self.director.assign(self.assignments.values())
        self.director.commit()

    def bundle(self) -> MetadataBundle:
        return MetadataBundle(
            {DIRECTOR: repository_metadata(self.director), IMAGE: repository_metadata(self.image)}
        )

    def trusted_roots(self) -> TrustedRoots:
        """Version-1 roots, as provisioned into an ECU at manufacture."""
        return TrustedRoots(self.director.roots[0], self.image.roots[0])
