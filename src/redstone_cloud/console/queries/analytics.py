"""Rows for the analytics charts: a campaign's finished vehicles, install times and
campaign reports; the fleet's version history per ECU role."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from redstone_cloud.console import analytics
from redstone_cloud.console.queries.campaigns import REASONS_SHOWN
from redstone_cloud.db.models import (
    Assignment,
    Campaign,
    DeviceEvent,
    Ecu,
    EcuVersion,
    ModelEcu,
    Vehicle,
)
from redstone_cloud.services import campaigns

REPORT_EVENT = "campaign_report"
"""The Master's final report of a campaign (per ECU: bytes downloaded and saved)."""


@dataclass(frozen=True)
class Volume:
    vehicles: int
    """Vehicles whose Master sent its campaign report."""
    downloaded: int
    saved: int
    """Bytes deltas spared: image length minus what was moved."""

    @property
    def saved_percent(self) -> int:
        whole = self.downloaded + self.saved
        return round(100 * self.saved / whole) if whole else 0


@dataclass(frozen=True)
class CampaignAnalytics:
    name: str
    success: analytics.Table
    install: analytics.Table
    reasons: analytics.Table
    volume: Volume

    def chart(self, which: str) -> analytics.Table | None:
        return {"success": self.success, "install": self.install, "reasons": self.reasons}.get(
            which
        )


def campaign(session: Session, name: str) -> CampaignAnalytics:
    campaign_id = campaigns.get(session, name).id  # NotFound: the 404 page
    finished = session.execute(
        select(Assignment.updated_at, Assignment.state).where(
            Assignment.campaign_id == campaign_id,
            Assignment.state.in_(("succeeded", "failed")),
        )
    ).all()
    first_event = (
        select(DeviceEvent.vehicle_id, func.min(DeviceEvent.at).label("first"))
        .where(DeviceEvent.campaign_id == campaign_id)
        .group_by(DeviceEvent.vehicle_id)
        .subquery()
    )
    took = [
        (done - began).total_seconds()
        for done, began in session.execute(
            select(Assignment.updated_at, first_event.c.first)
            .join(first_event, first_event.c.vehicle_id == Assignment.vehicle_id)
            .where(Assignment.campaign_id == campaign_id, Assignment.state == "succeeded")
        )
        if done >= began
    ]
    reasons = session.execute(
        select(Assignment.detail, func.count())
        .where(Assignment.campaign_id == campaign_id, Assignment.state == "failed")
        .group_by(Assignment.detail)
        .order_by(func.count().desc(), Assignment.detail)
        .limit(REASONS_SHOWN)
    ).all()
    return CampaignAnalytics(
        name=name,
        success=analytics.success_over_time((at, state) for at, state in finished),
        install=analytics.install_times(took),
        reasons=analytics.Table(
            ("reason", "vehicles"), [(r or "(no reason given)", n) for r, n in reasons]
        ),
        volume=_volume(session, campaign_id),
    )


def _volume(session: Session, campaign_id: int) -> Volume:
    """Sums over each vehicle's latest campaign report (a report resent counts once)."""
    latest: dict[int, dict[str, object]] = {}
    for vehicle_id, detail in session.execute(
        select(DeviceEvent.vehicle_id, DeviceEvent.detail)
        .where(DeviceEvent.campaign_id == campaign_id, DeviceEvent.kind == REPORT_EVENT)
        .order_by(DeviceEvent.id)
    ):
        if isinstance(detail, dict) and isinstance(detail.get("report"), dict):
            latest[vehicle_id] = detail["report"]
    downloaded = saved = 0
    for report in latest.values():
        ecus = report.get("ecus")
        for ecu in ecus if isinstance(ecus, list) else ():
            if isinstance(ecu, dict):
                downloaded += _count(ecu.get("bytes_downloaded"))
                saved += _count(ecu.get("bytes_saved"))
    return Volume(len(latest), downloaded, saved)


def _count(value: object) -> int:
    """A byte count from a vehicle's report: a non-negative int, anything else is 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def adoption(session: Session, now: dt.datetime) -> dict[str, analytics.Table]:
    """Per ECU role (``model/role``), ECUs per version over time."""
    rows = session.execute(
        select(
            func.coalesce(ModelEcu.role, Ecu.hardware_id),
            Ecu.id,
            EcuVersion.target,
            EcuVersion.reported_at,
        )
        .select_from(EcuVersion)
        .join(Ecu, Ecu.id == EcuVersion.ecu_id)
        .join(Vehicle, Vehicle.id == Ecu.vehicle_id)
        .outerjoin(
            ModelEcu,
            (ModelEcu.model_id == Vehicle.model_id) & (ModelEcu.hardware_id == Ecu.hardware_id),
        )
        .order_by(EcuVersion.reported_at)
    )
    per_role: dict[str, list[tuple[int, str, dt.datetime]]] = {}
    for role, ecu_id, target, at in rows:
        per_role.setdefault(str(role), []).append((ecu_id, target, at))
    return {role: analytics.adoption(changes, now) for role, changes in sorted(per_role.items())}


def campaign_names(session: Session) -> list[str]:
    return list(session.scalars(select(Campaign.name).order_by(Campaign.created_at.desc())))
