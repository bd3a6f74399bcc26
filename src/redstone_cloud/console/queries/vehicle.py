"""The vehicle page's reads: ECUs, history, last manifest, events, logs, certificates.

Vehicle-supplied text (manifests, event details, logs) is returned as plain strings;
the templates escape it (autoescape), and nothing here marks anything safe.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from redstone_cloud.db.models import (
    Assignment,
    Campaign,
    DeviceCertificate,
    DeviceEvent,
    DeviceLog,
    Ecu,
    EcuVersion,
    Manifest,
    ModelEcu,
    Vehicle,
)
from redstone_cloud.services import inventory

RECENT = 50
"""Rows of each kind the page shows (newest first)."""


@dataclass(frozen=True)
class EcuRow:
    serial: str
    role: str
    hardware_id: str
    primary: bool
    installed: str | None
    sha256: str | None
    prescribed: str | None
    """What the vehicle's baseline prescribes for this hardware id (None: nothing)."""
    updated_at: dt.datetime | None


@dataclass(frozen=True)
class Moment:
    """One line of the history timeline."""

    at: dt.datetime
    kind: str  # manifest | install | campaign
    text: str


@dataclass(frozen=True)
class EventRow:
    at: dt.datetime
    kind: str
    ecu_serial: str
    detail: str


@dataclass(frozen=True)
class LogRow:
    at: dt.datetime
    source: str
    text: str


@dataclass(frozen=True)
class CertRow:
    serial: str
    not_after: dt.datetime
    revoked_at: dt.datetime | None
    reason: str
    state: str  # valid | expired | revoked


@dataclass(frozen=True)
class VehicleView:
    vin: str
    model: str
    baseline: str | None
    created_at: dt.datetime
    last_seen_at: dt.datetime | None
    ecus: list[EcuRow]
    timeline: list[Moment]
    manifest_at: dt.datetime | None
    manifest: str | None
    """The last verified manifest as indented JSON."""
    events: list[EventRow]
    logs: list[LogRow]
    certificates: list[CertRow]


def _ecus(session: Session, vehicle: Vehicle) -> list[EcuRow]:
    slots = session.execute(
        select(ModelEcu.hardware_id, ModelEcu.role).where(ModelEcu.model_id == vehicle.model_id)
    )
    roles = dict(slots.tuples().all())
    prescribed = (
        {item.hardware_id: item.package.target for item in vehicle.baseline.items}
        if vehicle.baseline
        else {}
    )
    return [
        EcuRow(
            e.serial,
            roles.get(e.hardware_id, ""),
            e.hardware_id,
            e.is_primary,
            e.installed_target,
            e.installed_sha256,
            prescribed.get(e.hardware_id),
            e.updated_at,
        )
        for e in vehicle.ecus
    ]


def _timeline(session: Session, vehicle_id: int) -> list[Moment]:
    moments = [
        Moment(at, "manifest", "verified manifest received")
        for at in session.scalars(
            select(Manifest.received_at)
            .where(Manifest.vehicle_id == vehicle_id)
            .order_by(Manifest.id.desc())
            .limit(RECENT)
        )
    ]
    installs = session.execute(
        select(EcuVersion.reported_at, Ecu.serial, EcuVersion.target)
        .join(Ecu, Ecu.id == EcuVersion.ecu_id)
        .where(Ecu.vehicle_id == vehicle_id)
        .order_by(EcuVersion.id.desc())
        .limit(RECENT)
    )
    moments += [Moment(at, "install", f"{serial} runs {target}") for at, serial, target in installs]
    assignments = session.execute(
        select(Assignment.updated_at, Campaign.name, Assignment.state, Assignment.detail)
        .join(Campaign, Campaign.id == Assignment.campaign_id)
        .where(Assignment.vehicle_id == vehicle_id)
        .order_by(Assignment.id.desc())
        .limit(RECENT)
    )
    moments += [
        Moment(at, "campaign", f"campaign {name}: {state}" + (f" ({detail})" if detail else ""))
        for at, name, state, detail in assignments
    ]
    return sorted(moments, key=lambda m: m.at, reverse=True)[:RECENT]


def _certificate_state(cert: DeviceCertificate, now: dt.datetime) -> str:
    if cert.revoked_at is not None:
        return "revoked"
    return "expired" if cert.not_after <= now else "valid"


def vehicle_view(session: Session, vin: str, now: dt.datetime) -> VehicleView:
    """Everything the vehicle page shows; :class:`NotFound` for an unknown VIN."""
    vehicle = inventory.get_vehicle(session, vin)
    manifest = session.scalar(
        select(Manifest).where(Manifest.vehicle_id == vehicle.id).order_by(Manifest.id.desc())
    )
    events = session.scalars(
        select(DeviceEvent)
        .where(DeviceEvent.vehicle_id == vehicle.id)
        .order_by(DeviceEvent.id.desc())
        .limit(RECENT)
    )
    logs = session.scalars(
        select(DeviceLog)
        .where(DeviceLog.vehicle_id == vehicle.id)
        .order_by(DeviceLog.id.desc())
        .limit(RECENT)
    )
    certificates = session.scalars(
        select(DeviceCertificate)
        .where(DeviceCertificate.vehicle_id == vehicle.id)
        .order_by(DeviceCertificate.id.desc())
    )
    return VehicleView(
        vin=vehicle.vin,
        model=vehicle.model.name,
        baseline=vehicle.baseline.name if vehicle.baseline else None,
        created_at=vehicle.created_at,
        last_seen_at=vehicle.last_seen_at,
        ecus=_ecus(session, vehicle),
        timeline=_timeline(session, vehicle.id),
        manifest_at=manifest.received_at if manifest else None,
        manifest=json.dumps(manifest.body, indent=2, sort_keys=True) if manifest else None,
        events=[
            EventRow(e.at, e.kind, e.ecu_serial, json.dumps(e.detail, sort_keys=True))
            for e in events
        ],
        logs=[LogRow(log.at, log.source, log.text) for log in logs],
        certificates=[
            CertRow(
                c.serial, c.not_after, c.revoked_at, c.revocation_reason, _certificate_state(c, now)
            )
            for c in certificates
        ],
    )
