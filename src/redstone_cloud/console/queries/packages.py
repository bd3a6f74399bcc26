"""The packages page's reads: images and configs, the deltas the server made (with the
bytes each saves), delta jobs, and the image repository's Uptane metadata."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from redstone_cloud.db.models import Package
from redstone_cloud.services import deltas, imagerepo

TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")


@dataclass(frozen=True)
class PackageLine:
    target: str
    name: str
    version: str
    kind: str
    hardware_ids: list[str]
    release_counter: int
    supplier: str
    length: int
    sha256: str
    signed: bool
    """Named by the image repository's offline-signed targets metadata."""
    created_at: dt.datetime


@dataclass(frozen=True)
class DeltaLine:
    from_target: str
    to_target: str
    state: str
    delta_target: str | None
    full_length: int
    delta_length: int | None
    error: str

    @property
    def saved(self) -> int:
        return self.full_length - self.delta_length if self.delta_length is not None else 0

    @property
    def saved_percent(self) -> int:
        return round(100 * self.saved / self.full_length) if self.full_length else 0


@dataclass(frozen=True)
class RepoLine:
    name: str
    role: str
    version: int
    length: int
    delegated: bool


@dataclass(frozen=True)
class PackagesView:
    packages: list[PackageLine]
    deltas: list[DeltaLine]
    metadata: list[RepoLine]

    @property
    def bytes_saved(self) -> int:
        return sum(d.saved for d in self.deltas if d.state == "done")


def view(session: Session) -> PackagesView:
    signed = imagerepo.signed_target_names(session)
    packages = [
        PackageLine(
            p.target,
            p.name,
            p.version,
            p.kind,
            list(p.hardware_ids),
            p.release_counter,
            p.supplier,
            p.length,
            p.sha256,
            p.target in signed,
            p.created_at,
        )
        for p in session.scalars(
            select(Package).where(Package.kind != "delta").order_by(Package.id.desc())
        )
    ]
    jobs = [
        DeltaLine(
            str(j["from_target"]),
            str(j["to_target"]),
            str(j["state"]),
            None if j["delta_target"] is None else str(j["delta_target"]),
            int(str(j["full_length"])),
            None if j["delta_length"] is None else int(str(j["delta_length"])),
            str(j["error"]),
        )
        for j in reversed(deltas.list_jobs(session))
    ]
    metadata = [
        RepoLine(
            str(m["name"]),
            str(m["role"]),
            int(str(m["version"])),
            int(str(m["length"] or 0)),
            str(m["role"]) not in TOP_LEVEL,
        )
        for m in imagerepo.listing(session)
    ]
    return PackagesView(packages, jobs, metadata)
