"""Reads for the logs, audit and PKI pages. Vehicle-supplied text (log lines) and
actor-supplied text (audit details) stay plain strings; the templates escape them."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from redstone_cloud.db.models import (
    AuditRecord,
    Campaign,
    CertificateAuthority,
    DeviceCertificate,
    DeviceLog,
    Vehicle,
)
from redstone_cloud.errors import NotFound
from redstone_cloud.services import audit

PAGE = 100


@dataclass(frozen=True)
class LogFilter:
    vin: str = ""
    campaign: str = ""
    text: str = ""


@dataclass(frozen=True)
class LogLine:
    id: int
    at: dt.datetime
    vin: str
    campaign: str
    source: str
    text: str


def logs(session: Session, wanted: LogFilter, after_id: int = 0) -> list[LogLine]:
    """Matching logs, newest first: the latest page, or (``after_id``) those newer."""
    stmt = (
        select(DeviceLog, Vehicle.vin, Campaign.name)
        .join(Vehicle, Vehicle.id == DeviceLog.vehicle_id)
        .outerjoin(Campaign, Campaign.id == DeviceLog.campaign_id)
        .where(DeviceLog.id > after_id)
        .order_by(DeviceLog.id.desc())
        .limit(PAGE)
    )
    if wanted.vin:
        stmt = stmt.where(Vehicle.vin == wanted.vin)
    if wanted.campaign:
        if session.scalar(select(Campaign.id).where(Campaign.name == wanted.campaign)) is None:
            raise NotFound(f"no campaign named {wanted.campaign!r}")
        stmt = stmt.where(Campaign.name == wanted.campaign)
    if wanted.text:
        stmt = stmt.where(DeviceLog.text.contains(wanted.text, autoescape=True))
    return [
        LogLine(log.id, log.at, vin, campaign or "", log.source, log.text)
        for log, vin, campaign in session.execute(stmt)
    ]


@dataclass(frozen=True)
class AuditLine:
    id: int
    at: dt.datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    detail: str


def _line(entry: AuditRecord) -> AuditLine:
    detail = json.dumps(entry.detail, sort_keys=True, ensure_ascii=False)
    return AuditLine(
        entry.id, entry.at, entry.actor, entry.action, entry.object_type, entry.object_id, detail
    )


def audit_page(session: Session, query: audit.AuditQuery) -> list[AuditLine]:
    return [_line(e) for e in audit.search(session, query)]


def audit_all(session: Session, query: audit.AuditQuery, cap: int) -> list[AuditLine]:
    """Every matching record in append order, at most ``cap`` (the CSV export)."""
    found: list[AuditLine] = []
    after = query.after_id
    while len(found) < cap:
        page = audit.search(
            session, audit.AuditQuery(**{**query.__dict__, "after_id": after, "limit": 1000})
        )
        found.extend(_line(e) for e in page)
        if len(page) < 1000:
            break
        after = page[-1].id
    return found[:cap]


@dataclass(frozen=True)
class CertLine:
    serial: str
    vin: str
    issuer: str
    not_after: dt.datetime
    revoked_at: dt.datetime | None
    reason: str
    created_at: dt.datetime

    def state(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.not_after <= now else "valid"


@dataclass(frozen=True)
class AuthorityLine:
    name: str
    issuing: bool
    key: str
    created_at: dt.datetime


def certificates(session: Session, vin: str = "") -> list[CertLine]:
    stmt = (
        select(DeviceCertificate, Vehicle.vin, CertificateAuthority.name)
        .join(Vehicle, Vehicle.id == DeviceCertificate.vehicle_id)
        .join(CertificateAuthority, CertificateAuthority.id == DeviceCertificate.issuer_id)
        .order_by(DeviceCertificate.id.desc())
        .limit(PAGE)
    )
    if vin:
        stmt = stmt.where(Vehicle.vin == vin)
    return [
        CertLine(c.serial, v, issuer, c.not_after, c.revoked_at, c.revocation_reason, c.created_at)
        for c, v, issuer in session.execute(stmt)
    ]


def authorities(session: Session) -> list[AuthorityLine]:
    from redstone_cloud.services.pki import key_source

    rows = session.scalars(select(CertificateAuthority).order_by(CertificateAuthority.id))
    return [AuthorityLine(ca.name, ca.issuing, key_source(ca), ca.created_at) for ca in rows]
