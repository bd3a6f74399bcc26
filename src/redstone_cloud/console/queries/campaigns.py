"""The campaign pages' reads: the list, one campaign's live progress, the create form's
choices. Counts come from the same grouped queries the admin API's status uses;
vehicle-supplied failure messages are plain strings the templates escape."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from redstone_cloud.db.models import (
    Assignment,
    Baseline,
    Campaign,
    CampaignPackage,
    DeviceEvent,
    Ecu,
    ModelEcu,
    Package,
    Vehicle,
    VehicleModel,
)
from redstone_cloud.rollout import TERMINAL_STATES
from redstone_cloud.services import campaigns

FAILURE_EVENTS = ("install_failed", "rolled_back")
"""Event kinds an ECU reports when its part of a campaign failed."""
REASONS_SHOWN = 20


@dataclass(frozen=True)
class CampaignRow:
    name: str
    state: str
    created_at: dt.datetime
    packages: list[str]
    total: int
    succeeded: int
    failed: int

    @property
    def finished_percent(self) -> int:
        return _percent(self.succeeded + self.failed, self.total)


@dataclass(frozen=True)
class GroupProgress:
    position: int
    percent: int
    success_threshold: int
    error_threshold: int
    state: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def succeeded_percent(self) -> int:
        return _percent(self.counts.get("succeeded", 0), self.total)

    @property
    def failed_percent(self) -> int:
        return _percent(self.counts.get("failed", 0), self.total)

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in TERMINAL_STATES)


@dataclass(frozen=True)
class Failure:
    what: str
    vehicles: int


@dataclass(frozen=True)
class Progress:
    """Everything the live part of a campaign page shows."""

    name: str
    state: str
    groups: list[GroupProgress]
    counts: dict[str, int]
    halted: str
    """Why the rollout stopped by itself ("" if it did not): the group whose failures
    passed its threshold."""
    by_reason: list[Failure] = field(default_factory=list)
    by_ecu: list[Failure] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Detail:
    """The campaign's definition (the static part of its page)."""

    name: str
    state: str
    packages: list[str]
    targeting: dict[str, object]
    window: dict[str, object] | None
    consent_required: bool
    start_at: dt.datetime | None
    release_notes_url: str
    created_at: dt.datetime


@dataclass(frozen=True)
class BaselineChoice:
    model: str
    baseline: str
    packages: list[str]

    @property
    def key(self) -> str:
        return f"{self.model}/{self.baseline}"


@dataclass(frozen=True)
class Choices:
    models: list[str]
    baselines: list[BaselineChoice]
    packages: list[str]


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def campaign_rows(session: Session) -> list[CampaignRow]:
    """Every campaign, newest first, with its overall counts."""
    counts: dict[int, Counter[str]] = {}
    for campaign_id, state, n in session.execute(
        select(Assignment.campaign_id, Assignment.state, func.count()).group_by(
            Assignment.campaign_id, Assignment.state
        )
    ):
        counts.setdefault(campaign_id, Counter())[state] = n
    rows = session.scalars(
        select(Campaign)
        .options(selectinload(Campaign.packages).selectinload(CampaignPackage.package))
        .order_by(Campaign.created_at.desc(), Campaign.id.desc())
    )
    result = []
    for c in rows:
        mine = counts.get(c.id, Counter())
        result.append(
            CampaignRow(
                name=c.name,
                state=c.state,
                created_at=c.created_at,
                packages=[cp.package.target for cp in c.packages],
                total=sum(mine.values()),
                succeeded=mine["succeeded"],
                failed=mine["failed"],
            )
        )
    return result


def detail(session: Session, name: str) -> Detail:
    c = campaigns.get(session, name)  # NotFound: the console's 404 page
    return Detail(
        name=c.name,
        state=c.state,
        packages=[cp.package.target for cp in c.packages],
        targeting=dict(c.targeting),
        window=c.window,
        consent_required=c.consent_required,
        start_at=c.start_at,
        release_notes_url=c.release_notes_url,
        created_at=c.created_at,
    )


def progress(session: Session, name: str) -> Progress:
    status = campaigns.status(session, name)
    groups = [
        GroupProgress(
            position=g["position"],
            percent=g["percent"],
            success_threshold=g["success_threshold"],
            error_threshold=g["error_threshold"],
            state=g["state"],
            counts=g["counts"],
        )
        for g in status["groups"]
    ]
    campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == name))
    assert campaign_id is not None  # status() found it
    return Progress(
        name=name,
        state=status["state"],
        groups=groups,
        counts=status["counts"],
        halted=_halted(status["state"], groups),
        by_reason=_by_reason(session, campaign_id),
        by_ecu=_by_ecu(session, campaign_id),
    )


def _halted(state: str, groups: list[GroupProgress]) -> str:
    """The automatic halt, in words: the rollout engine aborts a campaign whose running
    group's failures pass its error threshold (``rollout.judge``)."""
    if state != "aborted":
        return ""
    for g in groups:
        if g.state == "aborted":
            return (
                f"Rollout halted: group {g.position + 1} had {g.failed_percent}% failed, "
                f"over its {g.error_threshold}% threshold. Vehicles not yet started were "
                "cancelled."
            )
    return "Rollout halted."


def _by_reason(session: Session, campaign_id: int) -> list[Failure]:
    rows = session.execute(
        select(Assignment.detail, func.count())
        .where(Assignment.campaign_id == campaign_id, Assignment.state == "failed")
        .group_by(Assignment.detail)
        .order_by(func.count().desc(), Assignment.detail)
        .limit(REASONS_SHOWN)
    )
    return [Failure(detail or "(no reason given)", n) for detail, n in rows]


def _by_ecu(session: Session, campaign_id: int) -> list[Failure]:
    """Failed ECUs by role and hardware id (serials are per vehicle; roles compare)."""
    role = (
        select(ModelEcu.role)
        .where(ModelEcu.model_id == Vehicle.model_id, ModelEcu.hardware_id == Ecu.hardware_id)
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(role, Ecu.hardware_id, func.count(func.distinct(DeviceEvent.vehicle_id)))
        .select_from(DeviceEvent)
        .join(Ecu, Ecu.serial == DeviceEvent.ecu_serial)
        .join(Vehicle, Vehicle.id == DeviceEvent.vehicle_id)
        .where(DeviceEvent.campaign_id == campaign_id, DeviceEvent.kind.in_(FAILURE_EVENTS))
        .group_by(role, Ecu.hardware_id)
        .order_by(func.count(func.distinct(DeviceEvent.vehicle_id)).desc())
        .limit(REASONS_SHOWN)
    )
    return [Failure(f"{r or '?'} ({hw})", n) for r, hw, n in rows]


def choices(session: Session) -> Choices:
    """What the create form offers: models, their baselines (with the packages each
    installs) and every image package."""
    models = list(session.scalars(select(VehicleModel.name).order_by(VehicleModel.name)))
    baselines = []
    for baseline, model in session.execute(
        select(Baseline, VehicleModel.name)
        .join(VehicleModel, VehicleModel.id == Baseline.model_id)
        .options(selectinload(Baseline.items))
        .order_by(VehicleModel.name, Baseline.created_at.desc())
    ):
        targets = session.scalars(
            select(Package.target).where(Package.id.in_([i.package_id for i in baseline.items]))
        )
        baselines.append(BaselineChoice(model, baseline.name, sorted(targets)))
    packages = list(
        session.scalars(
            select(Package.target).where(Package.kind != "delta").order_by(Package.target)
        )
    )
    return Choices(models, baselines, packages)
