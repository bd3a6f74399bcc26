"""What vehicles do: identify by certificate, poll, fetch nonces, send manifests, events, logs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, selectinload

from redstone_cloud import schedule
from redstone_cloud.db.models import (
    Assignment,
    Campaign,
    DeviceCertificate,
    DeviceEvent,
    DeviceLog,
    DirectorMetadata,
    Ecu,
    EcuVersion,
    Manifest,
    ManifestNonce,
    Vehicle,
)
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from redstone_cloud.services import audit, campaigns, director
from redstone_cloud.uptane_link import (
    OnlineRepository,
    ecu_key,
    expires_soon,
    keys_outdated,
    new_nonce,
    peek_nonce,
    verify_manifest,
)

EVENT_TRANSITIONS = {
    "consent_given": "accepted",
    "consent_denied": "cancelled",
    "download_started": "downloading",
    "install_started": "installing",
    "install_failed": "failed",
    "rolled_back": "failed",
}
"""Event kinds that move an assignment; success is confirmed by a verified manifest only."""


@dataclass(frozen=True)
class Identity:
    """The vehicle a TLS client certificate belongs to."""

    vehicle_id: int
    vin: str
    poll_rev: int
    director_dirty: bool


def identify(session: Session, fingerprint: str, now: dt.datetime) -> Identity:
    """Map a client certificate (by SHA-256 of its DER) to its vehicle, or refuse."""
    row = session.execute(
        select(
            DeviceCertificate.revoked_at,
            DeviceCertificate.not_after,
            Vehicle.id,
            Vehicle.vin,
            Vehicle.poll_rev,
            Vehicle.director_dirty,
        )
        .join(Vehicle, DeviceCertificate.vehicle_id == Vehicle.id)
        .where(DeviceCertificate.fingerprint == fingerprint)
    ).first()
    if row is None:
        raise Unauthorized("client certificate is not registered to any vehicle")
    revoked_at, not_after, vehicle_id, vin, poll_rev, dirty = row
    if revoked_at is not None:
        raise Forbidden("client certificate has been revoked")
    if not_after < now:
        raise Forbidden("client certificate has expired")
    return Identity(vehicle_id, vin, poll_rev, dirty)


def identify_by_id(session: Session, vehicle_id: int) -> Identity:
    vehicle = session.get_one(Vehicle, vehicle_id)
    return Identity(vehicle.id, vehicle.vin, vehicle.poll_rev, vehicle.director_dirty)


# --- polling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PollView:
    """Everything a poll answer depends on besides the clock; cached per (vehicle, poll_rev)."""

    poll_rev: int
    campaign_running: bool
    assignment_state: str | None
    start_at: dt.datetime | None
    window: dict[str, Any] | None
    with_update: bytes
    without_update: bytes

    def answer(self, now: dt.datetime) -> tuple[bytes, bool]:
        """(body, needs_offer): needs_offer means the slow path must publish first.

        A vehicle that already began keeps seeing its update (pause and window
        only hold back offers); a new offer needs a running campaign, its start
        time reached and its maintenance window open.
        """
        state = self.assignment_state
        if state in campaigns.PROGRESS:
            return self.with_update, False
        if state not in ("pending", "offered") or not self.campaign_running:
            return self.without_update, False
        if not schedule.may_offer(self.start_at, self.window, now):
            return self.without_update, False
        return self.with_update, state == "pending"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(etag: str, if_none_match: str | None) -> bool:
    """RFC 9110 If-None-Match: a list of entity tags, or ``*``."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return etag in tags or "*" in tags


def _body(identity: Identity, poll_interval_s: int, update: dict[str, Any] | None) -> bytes:
    doc = {
        "vin": identity.vin,
        "poll_interval_s": poll_interval_s,
        "update": update,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def poll_view(session: Session, identity: Identity, poll_interval_s: int) -> PollView:
    """Build the cacheable view of what this vehicle would be told."""
    assignment = director.active_assignment(session, identity.vehicle_id)
    none = _body(identity, poll_interval_s, None)
    if assignment is None:
        return PollView(identity.poll_rev, False, None, None, None, none, none)
    campaign = session.get_one(Campaign, assignment.campaign_id)
    vehicle = session.get_one(Vehicle, identity.vehicle_id, options=[selectinload(Vehicle.ecus)])
    full = campaigns.get(session, campaign.name)
    plan = campaigns.plan_for(session, full, vehicle)
    update_doc = {
        "campaign": campaign.name,
        "consent_required": campaign.consent_required,
        "release_notes_url": campaign.release_notes_url,
        "state": "offered" if assignment.state == "pending" else assignment.state,
        "ecus": {
            serial: {
                "target": package.target,
                "length": package.length,
                "sha256": package.sha256,
                "release_counter": package.release_counter,
            }
            for serial, package in sorted(plan.items())
        },
    }
    return PollView(
        identity.poll_rev,
        campaign.state == "running",
        assignment.state,
        campaign.start_at,
        campaign.window,
        _body(identity, poll_interval_s, update_doc),
        none,
    )


def lock_vehicle(session: Session, vehicle_id: int) -> None:
    """Serialise director publishing per vehicle until the transaction ends.

    Two requests of one vehicle (two polls, a poll and a metadata fetch) may both
    find the director needs publishing; without this both would sign and insert
    the same files, and one would fail on the unique file name (a 500). The
    no-op UPDATE takes the vehicle's row lock on PostgreSQL and the write lock on
    SQLite; the loser waits, then re-reads and finds the work done.
    """
    session.execute(
        update(Vehicle).where(Vehicle.id == vehicle_id).values(poll_rev=Vehicle.poll_rev)
    )


def offer(session: Session, signer: OnlineRepository, identity: Identity) -> None:
    """First offer to this vehicle: publish its director metadata, mark it offered."""
    lock_vehicle(session, identity.vehicle_id)
    vehicle = session.get_one(Vehicle, identity.vehicle_id, options=[selectinload(Vehicle.ecus)])
    assignment = director.active_assignment(session, vehicle.id)
    if assignment is None or assignment.state != "pending":
        return
    assignment.state = "offered"
    assignment.updated_at = utcnow()
    session.flush()
    director.sync(session, signer, vehicle)
    vehicle.poll_rev += 1


REFRESH_MARGIN = dt.timedelta(hours=12)
"""Re-sign a vehicle's director metadata when its timestamp expires sooner than this."""


def ensure_director(session: Session, signer: OnlineRepository, identity: Identity) -> None:
    """Publish director metadata if the vehicle has none, an offer was withdrawn, the
    signed timestamp is about to expire (the online heartbeat Uptane expects), or its
    root names other keys than the current online keys (after a rotation, or data from
    before per-role keys): the vehicle then gets a new root version and follows it."""
    if not _director_stale(session, signer, identity.vehicle_id, identity.director_dirty):
        return
    lock_vehicle(session, identity.vehicle_id)
    vehicle = session.get_one(Vehicle, identity.vehicle_id, options=[selectinload(Vehicle.ecus)])
    session.refresh(vehicle)
    if not _director_stale(session, signer, vehicle.id, vehicle.director_dirty):
        return  # another request published while this one waited for the lock
    director.sync(session, signer, vehicle)


def _director_stale(
    session: Session, signer: OnlineRepository, vehicle_id: int, dirty: bool
) -> bool:
    if dirty:
        return True
    rows = session.execute(
        select(DirectorMetadata.name, DirectorMetadata.body).where(
            DirectorMetadata.vehicle_id == vehicle_id,
            DirectorMetadata.name.in_(("timestamp.json", "root.json")),
        )
    ).all()
    files: dict[str, bytes] = dict(rows)
    timestamp, root = files.get("timestamp.json"), files.get("root.json")
    if timestamp is None or root is None:
        return True
    return expires_soon(timestamp, utcnow(), REFRESH_MARGIN) or keys_outdated(root, signer.keys())


# --- manifests ------------------------------------------------------------------------------


MAX_OPEN_NONCES = 16
"""Unused nonces kept per vehicle; older ones are forgotten (a vehicle asking in a loop
cannot grow the table)."""


def issue_nonce(session: Session, identity: Identity) -> str:
    nonce = new_nonce()
    session.add(ManifestNonce(vehicle_id=identity.vehicle_id, nonce=nonce))
    session.flush()
    open_nonces = select(ManifestNonce.id).where(
        ManifestNonce.vehicle_id == identity.vehicle_id, ManifestNonce.used_at.is_(None)
    )
    keep = open_nonces.order_by(ManifestNonce.id.desc()).limit(MAX_OPEN_NONCES)
    session.execute(
        delete(ManifestNonce).where(
            ManifestNonce.id.in_(open_nonces), ManifestNonce.id.not_in(keep.scalar_subquery())
        )
    )
    return nonce


def ingest_manifest(
    session: Session, identity: Identity, data: bytes, max_bytes: int
) -> dict[str, Any]:
    """Verify a vehicle manifest, update inventory and history, settle the assignment."""
    nonce = peek_nonce(data)
    issued = session.scalar(
        select(ManifestNonce).where(
            ManifestNonce.nonce == nonce, ManifestNonce.vehicle_id == identity.vehicle_id
        )
    )
    if issued is None:
        raise Conflict("manifest nonce was not issued to this vehicle (request one first)")
    if issued.used_at is not None:
        raise Conflict("manifest nonce was already used: replayed manifest rejected")
    vehicle = session.get_one(Vehicle, identity.vehicle_id, options=[selectinload(Vehicle.ecus)])
    primary = next(e for e in vehicle.ecus if e.is_primary)
    keys = {e.serial: ecu_key(e.public_key, f"ECU {e.serial}") for e in vehicle.ecus}
    manifest = verify_manifest(
        data, keys[primary.serial], keys, vin=vehicle.vin, nonce=nonce, max_bytes=max_bytes
    )
    claimed = session.execute(
        update(ManifestNonce)
        .where(ManifestNonce.id == issued.id, ManifestNonce.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if getattr(claimed, "rowcount", 1) != 1:
        raise Conflict("manifest nonce was already used: replayed manifest rejected")
    record = Manifest(vehicle_id=vehicle.id, nonce=nonce, body=json.loads(data))
    session.add(record)
    session.flush()
    now = utcnow()
    changed = []
    by_serial = {e.serial: e for e in vehicle.ecus}
    for serial, report in manifest.ecus.items():
        ecu: Ecu = by_serial[serial]
        if ecu.installed_sha256 != report.sha256:
            changed.append(serial)
            session.add(
                EcuVersion(
                    ecu_id=ecu.id,
                    target=report.filename,
                    sha256=report.sha256,
                    manifest_id=record.id,
                )
            )
        ecu.installed_target = report.filename
        ecu.installed_sha256 = report.sha256
        ecu.updated_at = now
    vehicle.last_seen_at = now
    outcome = _settle_assignment(session, vehicle, {s: r.sha256 for s, r in manifest.ecus.items()})
    audit.record(
        session,
        f"vehicle:{vehicle.vin}",
        "device.manifest",
        "vehicle",
        vehicle.vin,
        changed=changed,
        assignment=outcome,
    )
    return {"accepted": True, "changed_ecus": changed, "assignment": outcome}


def _settle_assignment(session: Session, vehicle: Vehicle, running: dict[str, str]) -> str | None:
    """Mark the vehicle's assignment succeeded once every assigned ECU runs its image.

    The plan names image packages; the director may sign a delta in their place
    (``director.sync``). A Sub that applied that delta reports the delta's target
    name with the sha256 of the image it built — the planned image's — so the
    comparison is always with the image, never with the delta file's own hash
    (which describes no running software, and would make the next delta offer,
    looked up by the reported sha256, impossible).
    """
    assignment = director.active_assignment(session, vehicle.id)
    if assignment is None or assignment.state not in director.OFFERED:
        return None
    plan = director.planned_images(session, vehicle)
    if all(running.get(serial) == package.sha256 for serial, package in plan.items()):
        _move(session, assignment, "succeeded", "manifest confirms every assigned image")
        return "succeeded"
    return assignment.state


def _move(session: Session, assignment: Assignment, state: str, detail: str) -> None:
    assignment.state = state
    assignment.detail = detail[:2000]
    assignment.updated_at = utcnow()
    session.execute(
        update(Vehicle)
        .where(Vehicle.id == assignment.vehicle_id)
        .values(poll_rev=Vehicle.poll_rev + 1)
    )
    session.flush()
    campaign = campaigns.get(session, session.get_one(Campaign, assignment.campaign_id).name)
    campaigns.advance(session, campaign)


# --- events and logs ---------------------------------------------------------------------------


def _campaign_id(session: Session, name: object) -> int | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidInput("campaign must be a string")
    campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == name))
    if campaign_id is None:
        raise NotFound(f"no campaign named {name[:128]!r}")
    return campaign_id


def _own_campaign_id(session: Session, identity: Identity, name: object) -> int | None:
    """The campaign a device upload names, which must be one the vehicle is in (any
    assignment state: reports and logs arrive after the campaign ended too)."""
    campaign_id = _campaign_id(session, name)
    if campaign_id is None:
        return None
    member = session.scalar(
        select(Assignment.id).where(
            Assignment.campaign_id == campaign_id, Assignment.vehicle_id == identity.vehicle_id
        )
    )
    if member is None:
        raise Forbidden(f"vehicle {identity.vin} is not in campaign {name!r}")
    return campaign_id


def record_event(session: Session, identity: Identity, event: dict[str, Any]) -> dict[str, Any]:
    """Store an event, audit it, and move the vehicle's assignment if the kind says so."""
    kind = event.get("kind")
    if not isinstance(kind, str) or not kind or len(kind) > 64:
        raise InvalidInput("event kind must be a non-empty string of at most 64 characters")
    detail = event.get("detail", {})
    serial = event.get("ecu_serial", "")
    if not isinstance(detail, dict) or not isinstance(serial, str):
        raise InvalidInput("event detail must be an object and ecu_serial a string")
    campaign_id = _own_campaign_id(session, identity, event.get("campaign"))
    session.add(
        DeviceEvent(
            vehicle_id=identity.vehicle_id,
            campaign_id=campaign_id,
            ecu_serial=serial,
            kind=kind,
            detail=detail,
        )
    )
    session.execute(
        update(Vehicle).where(Vehicle.id == identity.vehicle_id).values(last_seen_at=utcnow())
    )
    audit.record(
        session,
        f"vehicle:{identity.vin}",
        f"device.{kind}",
        "vehicle",
        identity.vin,
        event=detail,
        ecu_serial=serial,
    )
    new_state = EVENT_TRANSITIONS.get(kind)
    assignment = director.active_assignment(session, identity.vehicle_id)
    moved = None
    if (
        new_state is not None
        and assignment is not None
        and assignment.state in director.OFFERED
        and (campaign_id is None or campaign_id == assignment.campaign_id)
    ):
        _move(session, assignment, new_state, str(detail.get("message", kind)))
        moved = new_state
    return {"recorded": True, "assignment": moved}


def store_log(
    session: Session, identity: Identity, text: str, campaign: str | None, source: str
) -> int:
    log = DeviceLog(
        vehicle_id=identity.vehicle_id,
        campaign_id=_own_campaign_id(session, identity, campaign),
        source=source[:128],
        text=text,
    )
    session.add(log)
    session.flush()
    return log.id


def search_logs(
    session: Session,
    vin: str | None = None,
    campaign: str | None = None,
    text: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    stmt = select(DeviceLog, Vehicle.vin).join(Vehicle).order_by(DeviceLog.id.desc())
    if vin is not None:
        stmt = stmt.where(Vehicle.vin == vin)
    if campaign is not None:
        stmt = stmt.where(DeviceLog.campaign_id == _campaign_id(session, campaign))
    if text:
        stmt = stmt.where(DeviceLog.text.contains(text, autoescape=True))
    return [
        {
            "id": log.id,
            "vin": log_vin,
            "campaign_id": log.campaign_id,
            "source": log.source,
            "at": log.at.isoformat(),
            "text": log.text,
        }
        for log, log_vin in session.execute(stmt.limit(max(1, min(limit, 1000))))
    ]
