"""Software packages: upload into the blob store, list, and queue delta generation."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from redstone_cloud.db.models import DeltaJob, ModelEcu, Package
from redstone_cloud.errors import Conflict, InvalidInput, NotFound
from redstone_cloud.inputs import DB_INT_MAX, check_target_name, check_text
from redstone_cloud.services import audit
from redstone_cloud.services.inventory import DELTA_KINDS
from redstone_cloud.storage.base import BlobStore

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KINDS = ("image", "config")


@dataclass(frozen=True)
class PackageSpec:
    """What the uploader declares; length and hash are measured, never trusted."""

    name: str
    version: str
    hardware_ids: tuple[str, ...]
    kind: str = "image"
    release_counter: int = 0
    supplier: str = ""
    target: str | None = None

    def validate(self) -> None:
        """Names become storage paths and Uptane target paths: one component each,
        no separators, no ``..`` (everywhere a package enters: API, CLI, deltas)."""
        for label, value, width in (("name", self.name, 128), ("version", self.version, 64)):
            if not NAME.match(value) or len(value) > width or ".." in value:
                raise InvalidInput(
                    f"package {label} {value[:80]!r}: up to {width} letters, digits, "
                    "'.', '_', '-' (no '..')"
                )
        if self.kind not in KINDS:
            raise InvalidInput(f"package kind must be one of {KINDS}")
        if not self.hardware_ids or not all(self.hardware_ids):
            raise InvalidInput("a package needs at least one hardware id")
        for hardware_id in self.hardware_ids:
            if len(hardware_id) > 128:
                raise InvalidInput(f"hardware id {hardware_id[:40]!r}... exceeds 128 characters")
            check_text(hardware_id, "hardware id")
        if not 0 <= self.release_counter <= DB_INT_MAX:
            raise InvalidInput(f"release counter must be 0..{DB_INT_MAX}")
        if len(self.supplier) > 128:
            raise InvalidInput("supplier exceeds 128 characters")
        check_text(self.supplier, "supplier")
        check_target_name(self.target_name)

    @property
    def target_name(self) -> str:
        return self.target or f"{self.name}-{self.version}"


def upload(
    session: Session,
    store: BlobStore,
    actor: str,
    spec: PackageSpec,
    source: BinaryIO,
    *,
    max_bytes: int,
) -> Package:
    """Store the bytes, record the package and queue deltas from earlier versions."""
    spec.validate()
    duplicate = select(Package.id).where(Package.name == spec.name, Package.version == spec.version)
    if session.scalar(duplicate) is not None:
        raise Conflict(f"package {spec.name} {spec.version} already exists")
    if session.scalar(select(Package.id).where(Package.target == spec.target_name)) is not None:
        raise Conflict(f"target name {spec.target_name!r} is taken")
    blob = store.put(f"packages/{spec.name}/{spec.version}", source, max_bytes)
    package = Package(
        name=spec.name,
        version=spec.version,
        kind=spec.kind,
        target=spec.target_name,
        hardware_ids=list(spec.hardware_ids),
        release_counter=spec.release_counter,
        supplier=spec.supplier,
        length=blob.length,
        sha256=blob.sha256,
        storage_key=blob.key,
    )
    session.add(package)
    session.flush()
    if spec.kind == "image":
        queue_deltas(session, package)
    audit.record(
        session,
        actor,
        "package.upload",
        "package",
        package.target,
        sha256=blob.sha256,
        length=blob.length,
        hardware_ids=list(spec.hardware_ids),
    )
    return package


def takes_deltas(session: Session, hardware_ids: Iterable[str]) -> bool:
    """Whether some ECU may be offered a delta of an image for ``hardware_ids``: a model
    lists one of them with a kind that applies deltas (``inventory.DELTA_KINDS``), or no
    model lists any of them yet. The director sends UDS ECUs and boot scripts whole
    images, so a delta only they could get would be made for nobody."""
    kinds = set(
        session.scalars(select(ModelEcu.kind).where(ModelEcu.hardware_id.in_(list(hardware_ids))))
    )
    return not kinds or not kinds.isdisjoint(DELTA_KINDS)


def queue_deltas(session: Session, package: Package, keep: int = 3) -> list[DeltaJob]:
    """Deltas from the ``keep`` newest earlier images of the same name to this one
    (none when no ECU of its hardware takes deltas: :func:`takes_deltas`).

    One job per (source content, target content): an earlier image with this one's
    bytes needs no delta, and several uploads of the same bytes (or a pair some job
    already covers) are made once."""
    if not takes_deltas(session, package.hardware_ids):
        return []
    earlier = session.scalars(
        select(Package)
        .where(Package.name == package.name, Package.kind == "image", Package.id != package.id)
        .order_by(Package.id.desc())
    )
    return _new_jobs(session, package, earlier, keep)


def queue_deltas_from(
    session: Session, package: Package, installed: Iterable[str]
) -> list[DeltaJob]:
    """Deltas to ``package`` from the images whose contents ECUs run (``installed``
    sha256s, as a campaign starts), once per (source content, target content).

    An installed content the cloud holds no image of cannot be a delta's source;
    those ECUs download the full image."""
    wanted = set(installed) - {package.sha256}
    if package.kind != "image" or not wanted or not takes_deltas(session, package.hardware_ids):
        return []
    sources = session.scalars(
        select(Package)
        .where(Package.kind == "image", Package.sha256.in_(wanted))
        .order_by(Package.id)
    )
    return _new_jobs(session, package, sources, None)


def _new_jobs(
    session: Session, package: Package, sources: Iterable[Package], limit: int | None
) -> list[DeltaJob]:
    covered = _delta_sources(session, package.sha256) | {package.sha256}
    jobs: list[DeltaJob] = []
    for old in sources:
        if limit is not None and len(jobs) == limit:
            break
        if old.sha256 in covered:
            continue
        covered.add(old.sha256)
        jobs.append(DeltaJob(from_package_id=old.id, to_package_id=package.id))
    session.add_all(jobs)
    return jobs


def _delta_sources(session: Session, target_sha256: str) -> set[str]:
    """The source contents some delta job already turns into ``target_sha256``."""
    source, target = aliased(Package), aliased(Package)
    rows = session.scalars(
        select(source.sha256)
        .join(DeltaJob, DeltaJob.from_package_id == source.id)
        .join(target, DeltaJob.to_package_id == target.id)
        .where(target.sha256 == target_sha256)
    )
    return set(rows)


def get_package(session: Session, target: str) -> Package:
    package = session.scalar(select(Package).where(Package.target == target))
    if package is None:
        raise NotFound(f"no package with target name {target!r}")
    return package


def list_packages(
    session: Session, name: str | None = None, hardware_id: str | None = None
) -> list[Package]:
    stmt = select(Package).order_by(Package.id)
    if name is not None:
        stmt = stmt.where(Package.name == name)
    packages = list(session.scalars(stmt))
    if hardware_id is not None:
        packages = [p for p in packages if hardware_id in p.hardware_ids]
    return packages


def delta_for(session: Session, from_sha256: str, to_package: Package) -> Package | None:
    """A finished delta producing ``to_package``'s bytes from an image with ``from_sha256``
    (made for this package or for another upload of the same bytes)."""
    sources = select(Package.id).where(Package.sha256 == from_sha256)
    targets = select(Package.id).where(Package.sha256 == to_package.sha256)
    stmt = (
        select(Package)
        .join(DeltaJob, DeltaJob.delta_package_id == Package.id)
        .where(
            DeltaJob.to_package_id.in_(targets),
            DeltaJob.state == "done",
            DeltaJob.from_package_id.in_(sources),
        )
        .order_by(DeltaJob.id)
    )
    return session.scalars(stmt).first()
