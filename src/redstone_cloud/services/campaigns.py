"""Campaigns: define, target, start, roll out in phases, pause/resume/cancel, report.

Assignment states::

    waiting --group starts--> pending --offered in a poll--> offered
    offered --events--> downloading / installing --> succeeded | failed
    any non-terminal --cancel/abort--> cancelled

The director's metadata for a vehicle is published when its assignment is
first offered (so schedule and maintenance window hold) and cleared when a
campaign stops before the vehicle began.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from redstone_cloud import rollout
from redstone_cloud.consistency import EcuState, PackageRef, plan_assignment
from redstone_cloud.db.models import (
    Assignment,
    Baseline,
    Campaign,
    CampaignPackage,
    Ecu,
    Package,
    RolloutGroup,
    Vehicle,
    VehicleModel,
)
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import Conflict, InvalidInput, NotFound
from redstone_cloud.schedule import validate_window
from redstone_cloud.services import audit, packages

log = logging.getLogger(__name__)

ACTIVE_CAMPAIGN = ("running", "paused")
CAMPAIGN_STATES = ("draft", *ACTIVE_CAMPAIGN, "completed", "cancelled", "aborted")
NOT_STARTED = ("waiting", "pending", "offered")
PROGRESS = ("accepted", "downloading", "installing")
ASSIGNMENT_STATES = (*NOT_STARTED, *PROGRESS, *sorted(rollout.TERMINAL_STATES))


@dataclass(frozen=True)
class Targeting:
    """Which vehicles a campaign is for; all given criteria must hold."""

    model: str | None = None
    baseline: str | None = None
    vins: tuple[str, ...] = ()
    ecu_versions: dict[str, list[str]] = field(default_factory=dict)
    """hardware id -> installed target names that qualify."""

    def validate(self) -> None:
        if not (self.model or self.baseline or self.vins or self.ecu_versions):
            raise InvalidInput(
                "targeting needs at least one of model, baseline, vins, ecu_versions"
            )
        if self.baseline and not self.model:
            raise InvalidInput("targeting by baseline needs the model too")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "baseline": self.baseline,
            "vins": list(self.vins),
            "ecu_versions": self.ecu_versions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Targeting:
        return cls(
            data.get("model"),
            data.get("baseline"),
            tuple(data.get("vins", ())),
            dict(data.get("ecu_versions", {})),
        )


@dataclass(frozen=True)
class GroupSpec:
    percent: int
    success_threshold: int = 95
    error_threshold: int = 5


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    targeting: Targeting
    packages: tuple[str, ...]
    groups: tuple[GroupSpec, ...] = (GroupSpec(100),)
    consent_required: bool = False
    start_at: dt.datetime | None = None
    window: dict[str, Any] | None = None
    release_notes_url: str = ""


RELEASE_NOTES_URL_MAX = 2048
_PRINTABLE_ASCII = re.compile(r"[!-~]+")
"""No spaces, no control characters, nothing outside ASCII (IDNs in punycode)."""


def validate_release_notes_url(url: str) -> None:
    """Empty, or an absolute http(s) URL of printable ASCII: a vehicle's HMI shows it."""
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if (
        parts is None
        or len(url) > RELEASE_NOTES_URL_MAX
        or not _PRINTABLE_ASCII.fullmatch(url)
        or parts.scheme not in ("http", "https")
        or not parts.netloc
    ):
        raise InvalidInput(
            f"release_notes_url must be an http:// or https:// URL of at most "
            f"{RELEASE_NOTES_URL_MAX} printable ASCII characters"
        )


def create(session: Session, actor: str, spec: CampaignSpec) -> Campaign:
    """A draft campaign; nothing reaches a vehicle until :func:`start`."""
    spec.targeting.validate()
    validate_window(spec.window)
    validate_release_notes_url(spec.release_notes_url)
    if session.scalar(select(Campaign.id).where(Campaign.name == spec.name)) is not None:
        raise Conflict(f"campaign {spec.name!r} already exists")
    if not spec.packages:
        raise InvalidInput("a campaign installs at least one package")
    percents = [g.percent for g in spec.groups]
    try:
        rollout.split_into_groups([], percents, "")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    for group in spec.groups:
        if not (0 <= group.success_threshold <= 100 and 0 <= group.error_threshold <= 100):
            raise InvalidInput("thresholds are percentages 0..100")
    if spec.start_at is not None and spec.start_at.tzinfo is None:
        raise InvalidInput("start_at must carry a time zone")
    packages = []
    for target in spec.packages:
        package = session.scalar(select(Package).where(Package.target == target))
        if package is None:
            raise NotFound(f"campaign names unknown package {target!r}")
        packages.append(CampaignPackage(package=package))
    campaign = Campaign(
        name=spec.name,
        targeting=spec.targeting.as_dict(),
        consent_required=spec.consent_required,
        start_at=spec.start_at,
        window=spec.window,
        release_notes_url=spec.release_notes_url,
        packages=packages,
        groups=[
            RolloutGroup(
                position=i,
                percent=g.percent,
                success_threshold=g.success_threshold,
                error_threshold=g.error_threshold,
            )
            for i, g in enumerate(spec.groups)
        ],
    )
    session.add(campaign)
    session.flush()
    audit.record(
        session, actor, "campaign.create", "campaign", spec.name, packages=list(spec.packages)
    )
    return campaign


def get(session: Session, name: str) -> Campaign:
    campaign = session.scalar(
        select(Campaign)
        .where(Campaign.name == name)
        .options(
            selectinload(Campaign.groups),
            selectinload(Campaign.packages).selectinload(CampaignPackage.package),
        )
    )
    if campaign is None:
        raise NotFound(f"no campaign named {name!r}")
    return campaign


def list_all(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id)))


def _targeted_vehicles(session: Session, targeting: Targeting) -> list[Vehicle]:
    stmt = select(Vehicle).options(selectinload(Vehicle.ecus)).order_by(Vehicle.id)
    if targeting.model:
        stmt = stmt.join(VehicleModel).where(VehicleModel.name == targeting.model)
    if targeting.baseline:
        stmt = stmt.join(Baseline, Vehicle.baseline_id == Baseline.id).where(
            Baseline.name == targeting.baseline
        )
    if targeting.vins:
        stmt = stmt.where(Vehicle.vin.in_(targeting.vins))
    for hardware_id, versions in targeting.ecu_versions.items():
        stmt = stmt.where(
            Vehicle.id.in_(
                select(Ecu.vehicle_id).where(
                    Ecu.hardware_id == hardware_id, Ecu.installed_target.in_(versions)
                )
            )
        )
    return list(session.scalars(stmt))


def _release_counters(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Package.target, Package.release_counter)).all())


def _ecu_state(ecu: Ecu, baseline: Baseline | None, counters: dict[str, int]) -> EcuState:
    """What the anti-rollback rule compares with: the reported image, else the baseline."""
    if ecu.installed_target and ecu.installed_target in counters:
        return EcuState(ecu.serial, ecu.hardware_id, counters[ecu.installed_target])
    prescribed = [
        i for i in (baseline.items if baseline else []) if i.hardware_id == ecu.hardware_id
    ]
    if baseline is not None and prescribed:
        source = f"is on baseline {baseline.name} at"
        return EcuState(ecu.serial, ecu.hardware_id, prescribed[0].package.release_counter, source)
    return EcuState(ecu.serial, ecu.hardware_id, None)


def plan_for(
    session: Session,
    campaign: Campaign,
    vehicle: Vehicle,
    counters: dict[str, int] | None = None,
) -> dict[str, Package]:
    """ECU serial -> package for this vehicle, or InvalidInput saying why not.

    ``counters`` (target -> release counter) can be passed in when planning many vehicles.
    """
    counters = _release_counters(session) if counters is None else counters
    by_target = {cp.package.target: cp.package for cp in campaign.packages}
    plan = plan_assignment(
        [_ecu_state(e, vehicle.baseline, counters) for e in vehicle.ecus],
        [
            PackageRef(p.target, tuple(p.hardware_ids), p.release_counter)
            for p in by_target.values()
        ],
    )
    if not plan.ok:
        raise InvalidInput(f"{vehicle.vin}: " + "; ".join(plan.problems or ("nothing to install",)))
    return {serial: by_target[ref.target] for serial, ref in plan.items.items()}


def start(session: Session, actor: str, name: str) -> dict[str, Any]:
    """Resolve targets, check each vehicle, split into groups and start group 0.

    Vehicles that are inconsistent or busy in another campaign are skipped and
    named in the result (and the audit record).
    """
    campaign = get(session, name)
    if campaign.state != "draft":
        raise Conflict(f"campaign {name!r} is {campaign.state}, only a draft can start")
    busy = set(
        session.scalars(
            select(Assignment.vehicle_id)
            .join(Campaign)
            .where(
                Campaign.state.in_(ACTIVE_CAMPAIGN),
                Assignment.state.not_in(tuple(rollout.TERMINAL_STATES)),
            )
        )
    )
    eligible: dict[str, Vehicle] = {}
    skipped: dict[str, str] = {}
    installed = _InstalledContents()
    counters = _release_counters(session)
    for vehicle in _targeted_vehicles(session, Targeting.from_dict(campaign.targeting)):
        if vehicle.id in busy:
            skipped[vehicle.vin] = "busy in another campaign"
            continue
        try:
            plan = plan_for(session, campaign, vehicle, counters)
        except InvalidInput as exc:
            skipped[vehicle.vin] = str(exc)
            continue
        eligible[vehicle.vin] = vehicle
        installed.add(vehicle, plan)
    if not eligible:
        raise InvalidInput(
            f"campaign {name!r} matches no eligible vehicle ({len(skipped)} skipped)"
        )
    groups = rollout.split_into_groups(list(eligible), [g.percent for g in campaign.groups], name)
    for position, vins in enumerate(groups):
        for vin in vins:
            session.add(
                Assignment(
                    campaign_id=campaign.id, vehicle_id=eligible[vin].id, group_position=position
                )
            )
    campaign.state = "running"
    session.flush()
    _start_group(session, campaign, 0)
    deltas = installed.queue_deltas(session)
    log.info(
        "campaign %s started: %d vehicles, %d skipped, %d delta jobs queued",
        name,
        len(eligible),
        len(skipped),
        deltas,
    )
    audit.record(
        session,
        actor,
        "campaign.start",
        "campaign",
        name,
        vehicles=len(eligible),
        groups=[len(g) for g in groups],
        skipped=skipped,
        deltas_queued=deltas,
    )
    return {
        "vehicles": len(eligible),
        "groups": [len(g) for g in groups],
        "skipped": skipped,
        "deltas_queued": deltas,
    }


@dataclass
class _InstalledContents:
    """What the campaign's ECUs run, per package they are to get: the sources of the
    deltas the campaign needs (upload time only queues the newest earlier images)."""

    by_package: dict[int, tuple[Package, set[str]]] = field(default_factory=dict)

    def add(self, vehicle: Vehicle, plan: dict[str, Package]) -> None:
        for ecu in vehicle.ecus:
            package = plan.get(ecu.serial)
            if package is not None and ecu.installed_sha256:
                entry = self.by_package.setdefault(package.id, (package, set()))
                entry[1].add(ecu.installed_sha256)

    def queue_deltas(self, session: Session) -> int:
        """Queue the missing (installed content -> package) deltas; how many were new."""
        return sum(
            len(packages.queue_deltas_from(session, package, contents))
            for package, contents in self.by_package.values()
        )


def _start_group(session: Session, campaign: Campaign, position: int) -> None:
    for group in campaign.groups:
        if group.position == position:
            group.state = "running"
    session.execute(
        update(Assignment)
        .where(
            Assignment.campaign_id == campaign.id,
            Assignment.group_position == position,
            Assignment.state == "waiting",
        )
        .values(state="pending", updated_at=utcnow())
    )
    _bump_vehicles(session, campaign.id)


def _bump_vehicles(session: Session, campaign_id: int) -> None:
    """Invalidate the poll ETag of every vehicle in the campaign."""
    session.execute(
        update(Vehicle)
        .where(
            Vehicle.id.in_(
                select(Assignment.vehicle_id).where(Assignment.campaign_id == campaign_id)
            )
        )
        .values(poll_rev=Vehicle.poll_rev + 1)
    )


def pause(session: Session, actor: str, name: str, reason: str = "") -> Campaign:
    """Stop offering; vehicles that already began finish, the rest wait for resume."""
    campaign = get(session, name)
    if campaign.state != "running":
        raise Conflict(f"campaign {name!r} is {campaign.state}, only a running one can pause")
    campaign.state = "paused"
    _withdraw(session, campaign, to_state="pending", states=("offered",))
    audit.record(session, actor, "campaign.pause", "campaign", name, reason=reason)
    return campaign


def resume(session: Session, actor: str, name: str) -> Campaign:
    campaign = get(session, name)
    if campaign.state != "paused":
        raise Conflict(f"campaign {name!r} is {campaign.state}, only a paused one can resume")
    campaign.state = "running"
    _bump_vehicles(session, campaign.id)
    audit.record(session, actor, "campaign.resume", "campaign", name)
    advance(session, campaign, actor)
    return campaign


def cancel(session: Session, actor: str, name: str, reason: str = "") -> Campaign:
    """End the campaign; vehicles that had not begun are cancelled and their director cleared."""
    campaign = get(session, name)
    if campaign.state not in ("draft", *ACTIVE_CAMPAIGN):
        raise Conflict(f"campaign {name!r} is already {campaign.state}")
    _stop(session, campaign, "cancelled")
    audit.record(session, actor, "campaign.cancel", "campaign", name, reason=reason)
    return campaign


def _stop(session: Session, campaign: Campaign, final_state: str) -> None:
    campaign.state = final_state
    _withdraw(session, campaign, to_state="cancelled", states=NOT_STARTED)


def _withdraw(session: Session, campaign: Campaign, to_state: str, states: tuple[str, ...]) -> None:
    rows = session.scalars(
        select(Assignment).where(
            Assignment.campaign_id == campaign.id, Assignment.state.in_(states)
        )
    ).all()
    for assignment in rows:
        if assignment.state == "offered":
            session.execute(
                update(Vehicle)
                .where(Vehicle.id == assignment.vehicle_id)
                .values(director_dirty=True)
            )
        assignment.state = to_state
        assignment.updated_at = utcnow()
    _bump_vehicles(session, campaign.id)


def group_counts(session: Session, campaign_id: int, position: int) -> rollout.GroupCounts:
    states = Counter(
        dict(
            session.execute(
                select(Assignment.state, func.count())
                .where(Assignment.campaign_id == campaign_id, Assignment.group_position == position)
                .group_by(Assignment.state)
            ).all()
        )
    )
    return rollout.GroupCounts(
        total=sum(states.values()),
        succeeded=states["succeeded"],
        failed=states["failed"],
        finished=sum(states[s] for s in rollout.TERMINAL_STATES),
    )


def advance(session: Session, campaign: Campaign, actor: str = "rollout") -> rollout.Decision:
    """Judge the running group and act: the rollout engine's one step."""
    if campaign.state != "running":
        return rollout.Decision.CONTINUE
    running = [g for g in campaign.groups if g.state == "running"]
    if not running:
        return rollout.Decision.CONTINUE
    group = running[0]
    last = group.position == max(g.position for g in campaign.groups)
    decision = rollout.judge(
        group_counts(session, campaign.id, group.position),
        rollout.Thresholds(group.success_threshold, group.error_threshold),
        last_group=last,
    )
    if decision is rollout.Decision.CONTINUE:
        return decision
    if decision is rollout.Decision.ADVANCE:
        group.state = "done"
        _start_group(session, campaign, group.position + 1)
    elif decision is rollout.Decision.COMPLETE:
        group.state = "done"
        campaign.state = "completed"
    elif decision is rollout.Decision.PAUSE:
        campaign.state = "paused"
    elif decision is rollout.Decision.ABORT:
        group.state = "aborted"
        _stop(session, campaign, "aborted")
    log.info("campaign %s: group %d -> %s", campaign.name, group.position, decision.value)
    audit.record(
        session,
        actor,
        f"campaign.{decision.value}",
        "campaign",
        campaign.name,
        group=group.position,
    )
    return decision


def status(session: Session, name: str) -> dict[str, Any]:
    """Aggregate status: per group and overall counts by assignment state."""
    campaign = get(session, name)
    rows = session.execute(
        select(Assignment.group_position, Assignment.state, func.count())
        .where(Assignment.campaign_id == campaign.id)
        .group_by(Assignment.group_position, Assignment.state)
    )
    per_group: dict[int, Counter[str]] = {g.position: Counter() for g in campaign.groups}
    for position, state, count in rows:
        per_group[position][state] = count
    total: Counter[str] = Counter()
    for counts in per_group.values():
        total.update(counts)
    return {
        "name": campaign.name,
        "state": campaign.state,
        "consent_required": campaign.consent_required,
        "start_at": campaign.start_at.isoformat() if campaign.start_at else None,
        "window": campaign.window,
        "release_notes_url": campaign.release_notes_url,
        "targeting": campaign.targeting,
        "packages": [cp.package.target for cp in campaign.packages],
        "counts": dict(total),
        "groups": [
            {
                "position": g.position,
                "percent": g.percent,
                "success_threshold": g.success_threshold,
                "error_threshold": g.error_threshold,
                "state": g.state,
                "counts": dict(per_group[g.position]),
            }
            for g in campaign.groups
        ],
    }


def vehicle_states(
    session: Session, name: str, state: str | None = None, limit: int = 100, after_id: int = 0
) -> list[dict[str, Any]]:
    """Per-vehicle status, paged by assignment id."""
    campaign = get(session, name)
    stmt = (
        select(Assignment, Vehicle.vin)
        .join(Vehicle)
        .where(Assignment.campaign_id == campaign.id, Assignment.id > after_id)
        .order_by(Assignment.id)
        .limit(max(1, min(limit, 1000)))
    )
    if state is not None:
        stmt = stmt.where(Assignment.state == state)
    return [
        {
            "id": a.id,
            "vin": vin,
            "group": a.group_position,
            "state": a.state,
            "detail": a.detail,
            "updated_at": a.updated_at.isoformat(),
        }
        for a, vin in session.execute(stmt)
    ]
