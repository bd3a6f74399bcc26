"""Per-vehicle director metadata: publish what the vehicle's assignment says, serve files."""

from __future__ import annotations

import json

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from redstone_cloud.db.models import (
    Assignment,
    Campaign,
    DirectorMetadata,
    Ecu,
    Package,
    Vehicle,
)
from redstone_cloud.errors import NotFound
from redstone_cloud.onlinekeys import ROLES, DirectorKeyFiles
from redstone_cloud.services import audit, campaigns, imagerepo, inventory, packages
from redstone_cloud.uptane_link import Assignment as DirectorAssignment
from redstone_cloud.uptane_link import OnlineRepository

OFFERED = ("offered", *campaigns.PROGRESS)


def active_assignment(session: Session, vehicle_id: int) -> Assignment | None:
    """The vehicle's assignment in a running or paused campaign that has not ended."""
    return session.scalar(
        select(Assignment)
        .join(Campaign)
        .where(
            Assignment.vehicle_id == vehicle_id,
            Campaign.state.in_(campaigns.ACTIVE_CAMPAIGN),
            Assignment.state.in_((*campaigns.NOT_STARTED, *campaigns.PROGRESS)),
        )
    )


def planned_images(session: Session, vehicle: Vehicle) -> dict[str, Package]:
    """ECU serial -> package the director must currently name (empty: nothing offered)."""
    assignment = active_assignment(session, vehicle.id)
    if assignment is None or assignment.state not in OFFERED:
        return {}
    campaign = campaigns.get(session, session.get_one(Campaign, assignment.campaign_id).name)
    return campaigns.plan_for(session, campaign, vehicle)


def sync(session: Session, director: OnlineRepository, vehicle: Vehicle) -> None:
    """Re-sign the vehicle's director targets to match its current assignment."""
    plan = planned_images(session, vehicle)
    ecus = {ecu.serial: ecu for ecu in vehicle.ecus}
    kinds = {slot.hardware_id: slot.kind for slot in vehicle.model.ecus}
    signed = imagerepo.signed_target_names(session) if plan else set()
    items = []
    for serial, package in sorted(plan.items()):
        source = ecus[serial].installed_sha256
        applies = kinds.get(ecus[serial].hardware_id) in inventory.DELTA_KINDS
        delta = packages.delta_for(session, source, package) if source and applies else None
        if delta is not None and delta.target in signed:
            file, base = delta, source
        else:
            file, base = package, None
        items.append(
            DirectorAssignment(
                ecu_serial=serial,
                hardware_id=ecus[serial].hardware_id,
                filename=file.target,
                length=file.length,
                sha256=file.sha256,
                release_counter=package.release_counter,
                delta_source_sha256=base,
            )
        )
    rows = {
        row.name: row
        for row in session.scalars(
            select(DirectorMetadata).where(DirectorMetadata.vehicle_id == vehicle.id)
        )
    }
    files = director.publish_director(vehicle.vin, {n: r.body for n, r in rows.items()}, items)
    for name, body in files.items():
        if name in rows:
            if rows[name].body != body:
                rows[name].body = body
        else:
            session.add(DirectorMetadata(vehicle_id=vehicle.id, name=name, body=body))
    vehicle.director_dirty = False


def named_targets(session: Session, vehicle_id: int) -> set[str]:
    """Target names the vehicle's newest director targets metadata lists (what it may
    download: its assignment's images, or the deltas signed in their place)."""
    rows = session.execute(
        select(DirectorMetadata.name, DirectorMetadata.body).where(
            DirectorMetadata.vehicle_id == vehicle_id,
            DirectorMetadata.name.like("%.targets.json"),
        )
    ).all()
    newest = max(rows, key=lambda row: int(row[0].split(".", 1)[0]), default=None)
    if newest is None:
        return set()
    return set(json.loads(newest[1])["signed"]["targets"])


def may_download(session: Session, vehicle_id: int, package: Package) -> bool:
    """Whether the vehicle may download ``package`` under the ``assignment`` scope: its
    newest director targets name it, or one of its ECUs of a hardware id the package is
    for runs it (reported in a verified manifest by sha256, or by target name where the
    ECU reports no hash, as UDS ECUs do). The Master keeps a UDS ECU's current image to
    flash it back if the update fails."""
    if package.target in named_targets(session, vehicle_id):
        return True
    running = session.scalars(
        select(Ecu.hardware_id).where(
            Ecu.vehicle_id == vehicle_id,
            Ecu.hardware_id.in_(package.hardware_ids),
            or_(
                Ecu.installed_sha256 == package.sha256,
                and_(
                    or_(Ecu.installed_sha256.is_(None), Ecu.installed_sha256 == ""),
                    Ecu.installed_target == package.target,
                ),
            ),
        )
    ).first()
    return running is not None


def read_file(session: Session, vehicle_id: int, name: str) -> bytes:
    body = session.scalar(
        select(DirectorMetadata.body).where(
            DirectorMetadata.vehicle_id == vehicle_id, DirectorMetadata.name == name
        )
    )
    if body is None:
        raise NotFound(f"director has no {name}")
    return body


def rotate_keys(
    session: Session,
    files: DirectorKeyFiles,
    actor: str,
    roles: list[str] | None = None,
    *,
    to_token: str | None = None,
) -> dict[str, object]:
    """New online keys for ``roles`` (default: all four); old ones are kept as retired.

    Nothing is re-signed here: each vehicle's director sees at its next contact that its
    root names retired keys and publishes a new root version signed by the old and the
    new root keys (``uptane_link.OnlineRepository``), which the vehicle follows.
    """
    rotated = files.rotate(roles or ROLES, to_token=to_token)
    keys = {
        r.role: {"old_keyid": r.old_keyid, "new_keyid": r.new_keyid, "key": files.location(r.role)}
        for r in rotated
    }
    audit.record(session, actor, "director.rotate_keys", "director_keys", ",".join(keys), **keys)
    vehicles = session.scalar(select(func.count(func.distinct(DirectorMetadata.vehicle_id))))
    return {"rotated": keys, "vehicles_to_follow": vehicles or 0}
