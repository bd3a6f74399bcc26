"""Offline bundles, cloud side: one vehicle's current assignment as a file for USB install.

The format (docs/bundle.md) belongs to ``redstone_agent.uptane.offline``; this
module only chooses what goes in. :func:`prepare` runs in a transaction: it
publishes the vehicle's director metadata for its assignment the way the first
poll does (so the bundle holds exactly what the vehicle would fetch online, with
a freshly signed timestamp), picks one consistent snapshot of both repositories
and the stored packages the director names, plus the image each UDS ECU runs now
(the Master must be able to flash it back, docs/master.md). :func:`stream` then
writes the tar from that plan without the database, so the CLI writes it to a
file and the admin API streams it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

from redstone_agent.uptane.offline import (
    MANIFEST,
    BundleManifest,
    Member,
    metadata_member,
    tar_size,
    tar_stream,
    target_member,
)
from redstone_cloud.db.models import Campaign, DirectorMetadata, Ecu, Package, RepoMetadata, Vehicle
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import Conflict, NotFound
from redstone_cloud.services import audit, device, director, imagerepo, inventory
from redstone_cloud.storage.base import BlobStore
from redstone_cloud.uptane_link import OnlineRepository

_ROOT_FILE = re.compile(r"[0-9]+\.root\.json")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class BundleFile:
    """A stored package that goes into the bundle."""

    target: str
    sha256: str
    length: int
    storage_key: str
    purpose: str
    """``assigned`` (the director names it) or ``rollback`` (a UDS ECU runs it now)."""
    ecus: tuple[str, ...]


@dataclass(frozen=True)
class BundlePlan:
    """Everything a bundle holds, decided; writing it needs only the blob store."""

    manifest: BundleManifest
    metadata: Mapping[str, bytes]
    """Member name (``director/3.targets.json``) -> the published bytes."""
    files: tuple[BundleFile, ...]
    mtime: int
    missing_rollback: tuple[str, ...] = ()
    """UDS ECUs whose running image the cloud does not know or the image repository
    does not sign: the Master will refuse the campaign unless it knows better."""

    @property
    def filename(self) -> str:
        """A download's suggested name: VIN and campaign, safe in any header or shell."""
        campaign = _UNSAFE.sub("_", self.manifest.campaign)
        return f"{self.manifest.vin}-{campaign}.rsbundle"

    def members(self, store: BlobStore) -> list[Member]:
        manifest = self.manifest.to_bytes()
        members: list[Member] = [(MANIFEST, len(manifest), functools.partial(_once, manifest))]
        for name, data in self.metadata.items():
            members.append((name, len(data), functools.partial(_once, data)))
        for file in self.files:
            read = functools.partial(store.read, file.storage_key)
            members.append((target_member(file.sha256), file.length, read))
        return members

    def size(self) -> int:
        sizes = [(MANIFEST, len(self.manifest.to_bytes()))]
        sizes += [(name, len(data)) for name, data in self.metadata.items()]
        sizes += [(target_member(f.sha256), f.length) for f in self.files]
        return tar_size(sizes, self.mtime)

    def summary(self) -> dict[str, Any]:
        return {
            "vin": self.manifest.vin,
            "campaign": self.manifest.campaign,
            "expires": self.manifest.expires,
            "bytes": self.size(),
            "targets": [
                {"target": f.target, "purpose": f.purpose, "ecus": list(f.ecus), "bytes": f.length}
                for f in self.files
            ],
            "missing_rollback": list(self.missing_rollback),
        }


def prepare(
    session: Session,
    signer: OnlineRepository,
    vin: str,
    *,
    actor: str,
    campaign: str | None = None,
) -> BundlePlan:
    """Publish ``vin``'s director metadata for its assignment and plan its bundle.

    One-line errors: unknown VIN (404); no assignment, another campaign than
    ``campaign``, a paused campaign or a rollout group not started yet (409).
    """
    vehicle_id = session.scalar(select(Vehicle.id).where(Vehicle.vin == vin))
    if vehicle_id is None:
        raise NotFound(f"unknown VIN {vin}")
    device.lock_vehicle(session, vehicle_id)
    vehicle = inventory.get_vehicle(session, vin)
    assignment = director.active_assignment(session, vehicle.id)
    if assignment is None:
        raise Conflict(f"vehicle {vin} has no assignment in a running campaign: nothing to bundle")
    running = session.get_one(Campaign, assignment.campaign_id)
    if campaign is not None and running.name != campaign:
        raise Conflict(f"vehicle {vin} is in campaign {running.name!r}, not {campaign!r}")
    if running.state != "running":
        raise Conflict(f"campaign {running.name!r} is {running.state}: resume it first")
    if assignment.state == "waiting":
        raise Conflict(f"vehicle {vin} waits for its rollout group of {running.name!r} to start")
    if assignment.state == "pending":
        device.offer(session, signer, device.identify_by_id(session, vehicle.id))
    else:
        director.sync(session, signer, vehicle)  # re-signed: a fresh timestamp to carry
    session.flush()

    published = select(DirectorMetadata.name, DirectorMetadata.body).where(
        DirectorMetadata.vehicle_id == vehicle.id
    )
    director_files = _consistent_set("director", dict(session.execute(published).all()))
    uploaded = select(RepoMetadata.name, RepoMetadata.body)
    image_files = _consistent_set("image", dict(session.execute(uploaded).all()))
    assigned = _assigned_files(session, _newest_targets(director_files))
    rollback, missing = _rollback_files(session, vehicle, assigned)
    files = _unique([*assigned, *rollback])
    now = utcnow()
    metadata = {metadata_member("director", n): b for n, b in director_files.items()}
    metadata.update({metadata_member("image", n): b for n, b in image_files.items()})
    manifest = BundleManifest(
        vin=vin,
        campaign=running.name,
        consent_required=running.consent_required,
        release_notes_url=running.release_notes_url,
        created=_iso(now),
        expires=_iso(min(_expiry(director_files), _expiry(image_files))),
    )
    audit.record(
        session,
        actor,
        "vehicle.bundle",
        "vehicle",
        vin,
        campaign=running.name,
        targets=[f.target for f in files],
        missing_rollback=list(missing),
    )
    return BundlePlan(manifest, metadata, tuple(files), int(now.timestamp()), tuple(missing))


def stream(plan: BundlePlan, store: BlobStore) -> Iterator[bytes]:
    """The bundle's bytes (exactly ``plan.size()`` of them)."""
    return tar_stream(plan.members(store), plan.mtime)


def write(plan: BundlePlan, store: BlobStore, output: Path) -> int:
    """Write the bundle to ``output`` (temporary file, fsync, rename); its size."""
    output = Path(output)
    part = output.with_name(f".{output.name}.part")
    size = 0
    try:
        with part.open("wb") as out:
            for chunk in stream(plan, store):
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        part.replace(output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return size


# --- choosing the metadata -----------------------------------------------------------------


def _consistent_set(repository: str, published: Mapping[str, bytes]) -> dict[str, bytes]:
    """Every root version plus the timestamp, the snapshot it names and the targets
    roles that snapshot names: what ngclient fetches, under the names it asks for."""
    timestamp = published.get("timestamp.json")
    if timestamp is None:
        raise Conflict(f"the {repository} repository has published nothing yet")
    chosen = {name: body for name, body in published.items() if _ROOT_FILE.fullmatch(name)}
    chosen["timestamp.json"] = timestamp
    version = Metadata[Timestamp].from_bytes(timestamp).signed.snapshot_meta.version
    snapshot = _published(repository, published, f"{version}.snapshot.json")
    chosen[f"{version}.snapshot.json"] = snapshot
    for meta_name, meta in Metadata[Snapshot].from_bytes(snapshot).signed.meta.items():
        role = meta_name.removesuffix(".json")
        name = f"{meta.version}.{quote(role, '')}.json"
        chosen[name] = _published(repository, published, name)
    return chosen


def _published(repository: str, published: Mapping[str, bytes], name: str) -> bytes:
    body = published.get(name)
    if body is None:
        raise Conflict(f"the {repository} repository's snapshot names {name}, which is missing")
    return body


def _newest_targets(files: Mapping[str, bytes]) -> Targets:
    names = [n for n in files if n.endswith(".targets.json")]
    newest = max(names, key=lambda n: int(n.split(".", 1)[0]))
    return Metadata[Targets].from_bytes(files[newest]).signed


def _expiry(files: Mapping[str, bytes]) -> dt.datetime:
    """When the first of these files expires (the newest root's expiry counts, older
    roots' do not): after that the vehicle refuses the bundle."""
    roots = sorted((n for n in files if _ROOT_FILE.fullmatch(n)), key=lambda n: int(n[:-10]))
    names = [n for n in files if not _ROOT_FILE.fullmatch(n)] + roots[-1:]
    expiries: list[dt.datetime] = [Metadata[Any].from_bytes(files[n]).signed.expires for n in names]
    return min(expiries)


def _once(data: bytes) -> list[bytes]:
    return [data]


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- choosing the files ---------------------------------------------------------------------


def _assigned_files(session: Session, targets: Targets) -> list[BundleFile]:
    files = []
    for path, target in sorted(targets.targets.items()):
        package = session.scalar(select(Package).where(Package.target == path))
        if package is None:
            raise Conflict(f"the director names {path}, which is not a stored package")
        if (package.length, package.sha256) != (target.length, target.hashes.get("sha256")):
            raise Conflict(f"the director's {path} differs from the stored package")
        ecus = tuple(sorted(target.custom.get("ecus", {})))
        files.append(
            BundleFile(path, package.sha256, package.length, package.storage_key, "assigned", ecus)
        )
    return files


def _rollback_files(
    session: Session, vehicle: Vehicle, assigned: list[BundleFile]
) -> tuple[list[BundleFile], list[str]]:
    """The image each assigned UDS ECU runs now, if the cloud knows it and the image
    repository signs it (the Master verifies it there before flashing it back)."""
    uds_hardware = {slot.hardware_id for slot in vehicle.model.ecus if slot.kind == "uds"}
    ecus = {ecu.serial: ecu for ecu in vehicle.ecus}
    signed = imagerepo.signed_target_names(session)
    files, missing = [], []
    for serial in sorted({s for f in assigned for s in f.ecus}):
        ecu = ecus.get(serial)
        if ecu is None or ecu.hardware_id not in uds_hardware:
            continue
        package = _running_package(session, ecu)
        if package is None or package.target not in signed:
            missing.append(serial)
            continue
        files.append(
            BundleFile(
                package.target,
                package.sha256,
                package.length,
                package.storage_key,
                "rollback",
                (serial,),
            )
        )
    return files, missing


def _running_package(session: Session, ecu: Ecu) -> Package | None:
    """The stored image the ECU's last verified manifest reports (by hash, else by name)."""
    if ecu.installed_sha256:
        found = select(Package).where(Package.sha256 == ecu.installed_sha256)
    elif ecu.installed_target:
        found = select(Package).where(Package.target == ecu.installed_target)
    else:
        return None
    fitting = [p for p in session.scalars(found) if ecu.hardware_id in p.hardware_ids]
    fitting.sort(key=lambda p: (p.target != ecu.installed_target, p.kind != "image", p.id))
    return fitting[0] if fitting else None


def _unique(files: list[BundleFile]) -> list[BundleFile]:
    """One member per content (two ECUs may run or get the same image)."""
    seen: dict[str, BundleFile] = {}
    for file in files:
        if file.sha256 in seen:
            first = seen[file.sha256]
            seen[file.sha256] = BundleFile(
                first.target,
                first.sha256,
                first.length,
                first.storage_key,
                first.purpose,
                tuple(sorted({*first.ecus, *file.ecus})),
            )
        else:
            seen[file.sha256] = file
    return list(seen.values())
