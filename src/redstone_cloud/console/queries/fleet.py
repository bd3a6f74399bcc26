"""The fleet page's reads: models and baselines, versions per ECU role, the vehicle list."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from redstone_cloud.db.models import (
    Assignment,
    Baseline,
    BaselineItem,
    Ecu,
    ModelEcu,
    Package,
    Vehicle,
    VehicleModel,
)

PAGE_SIZE = 25
NOT_REPORTED = "(not reported)"


@dataclass(frozen=True)
class FleetFilter:
    """What the fleet page's form asks for; all parts combine with AND."""

    search: str = ""
    """Part of a VIN or of an ECU serial (any case)."""
    out_of_date: bool = False
    failing: bool = False
    silent_days: int | None = None
    page: int = 1


@dataclass(frozen=True)
class ModelCount:
    model: str
    baseline: str | None
    vehicles: int


@dataclass(frozen=True)
class VersionCount:
    role: str
    version: str
    ecus: int


@dataclass(frozen=True)
class VehicleRow:
    vin: str
    model: str
    baseline: str | None
    last_seen_at: dt.datetime | None
    out_of_date: bool
    last_assignment: str | None


@dataclass(frozen=True)
class VehiclePage:
    rows: list[VehicleRow]
    total: int
    page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def by_model_and_baseline(session: Session) -> list[ModelCount]:
    stmt = (
        select(VehicleModel.name, Baseline.name, func.count(Vehicle.id))
        .select_from(Vehicle)
        .join(VehicleModel, VehicleModel.id == Vehicle.model_id)
        .outerjoin(Baseline, Baseline.id == Vehicle.baseline_id)
        .group_by(VehicleModel.name, Baseline.name)
        .order_by(VehicleModel.name, Baseline.name)
    )
    return [ModelCount(model, baseline, count) for model, baseline, count in session.execute(stmt)]


def version_distribution(session: Session) -> dict[str, list[VersionCount]]:
    """ECU role -> how many ECUs in that role run each reported image, most first."""
    stmt = (
        select(ModelEcu.role, Ecu.installed_target, func.count(Ecu.id))
        .select_from(Ecu)
        .join(Vehicle, Vehicle.id == Ecu.vehicle_id)
        .join(
            ModelEcu,
            and_(ModelEcu.model_id == Vehicle.model_id, ModelEcu.hardware_id == Ecu.hardware_id),
        )
        .group_by(ModelEcu.role, Ecu.installed_target)
    )
    roles: dict[str, list[VersionCount]] = {}
    for role, target, count in session.execute(stmt):
        roles.setdefault(role, []).append(VersionCount(role, target or NOT_REPORTED, count))
    return {
        role: sorted(counts, key=lambda c: (-c.ecus, c.version))
        for role, counts in sorted(roles.items())
    }


def _out_of_date() -> ColumnElement[bool]:
    """Some ECU runs other than what the vehicle's baseline prescribes for its hardware."""
    return (
        select(Ecu.id)
        .join(
            BaselineItem,
            and_(
                BaselineItem.baseline_id == Vehicle.baseline_id,
                BaselineItem.hardware_id == Ecu.hardware_id,
            ),
        )
        .join(Package, Package.id == BaselineItem.package_id)
        .where(
            Ecu.vehicle_id == Vehicle.id,
            or_(Ecu.installed_target.is_(None), Ecu.installed_target != Package.target),
        )
        .exists()
    )


def _last_assignment() -> ColumnElement[str | None]:
    return (
        select(Assignment.state)
        .where(Assignment.vehicle_id == Vehicle.id)
        .order_by(Assignment.updated_at.desc(), Assignment.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _conditions(wanted: FleetFilter, now: dt.datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    term = wanted.search.strip()
    if term:
        serial_match = (
            select(Ecu.id)
            .where(Ecu.vehicle_id == Vehicle.id, Ecu.serial.icontains(term, autoescape=True))
            .exists()
        )
        conditions.append(or_(Vehicle.vin.icontains(term, autoescape=True), serial_match))
    if wanted.out_of_date:
        conditions.append(_out_of_date())
    if wanted.failing:
        conditions.append(_last_assignment() == "failed")
    if wanted.silent_days is not None:
        cutoff = now - dt.timedelta(days=wanted.silent_days)
        conditions.append(or_(Vehicle.last_seen_at.is_(None), Vehicle.last_seen_at < cutoff))
    return conditions


def vehicles(session: Session, wanted: FleetFilter, now: dt.datetime) -> VehiclePage:
    """One page of vehicles matching ``wanted``, by VIN."""
    conditions = _conditions(wanted, now)
    total = session.scalar(select(func.count(Vehicle.id)).where(*conditions)) or 0
    page = max(1, wanted.page)
    stmt = (
        select(
            Vehicle.vin,
            VehicleModel.name,
            Baseline.name,
            Vehicle.last_seen_at,
            _out_of_date(),
            _last_assignment(),
        )
        .join(VehicleModel, VehicleModel.id == Vehicle.model_id)
        .outerjoin(Baseline, Baseline.id == Vehicle.baseline_id)
        .where(*conditions)
        .order_by(Vehicle.vin)
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    rows = [VehicleRow(*row) for row in session.execute(stmt)]
    return VehiclePage(rows, total, page)
