"""Vehicle models, baselines, vehicles and their ECUs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from redstone_cloud.db.models import (
    Baseline,
    BaselineItem,
    Ecu,
    EcuVersion,
    ModelEcu,
    Package,
    Vehicle,
    VehicleModel,
)
from redstone_cloud.errors import Conflict, InvalidInput, NotFound
from redstone_cloud.services import audit
from redstone_cloud.uptane_link import check_public_key

VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
ECU_KINDS = ("primary", "sub", "uds", "bootloader")
"""primary: the TBox (its Master); sub: a domain controller; uds: a legacy ECU the
Master flashes; bootloader: the TBox's boot script (written whole into a spare copy)."""
DELTA_KINDS = frozenset({"primary", "sub"})
"""Kinds whose updater rebuilds an image from a delta against its running slot; the
director offers the others (UDS flashes, boot-script copies) whole images only."""


@dataclass(frozen=True)
class EcuSlot:
    """One entry of a model's topology."""

    role: str
    hardware_id: str
    kind: str


@dataclass(frozen=True)
class EcuSpec:
    """An ECU as registered on a vehicle."""

    serial: str
    hardware_id: str
    public_key: dict[str, Any]
    primary: bool = False


def create_model(
    session: Session, actor: str, name: str, description: str, ecus: list[EcuSlot]
) -> VehicleModel:
    """A model with its ECU topology; exactly one primary (the TBox running the Master)."""
    if session.scalar(select(VehicleModel.id).where(VehicleModel.name == name)) is not None:
        raise Conflict(f"vehicle model {name!r} already exists")
    if [e.kind for e in ecus].count("primary") != 1:
        raise InvalidInput("a model needs exactly one ECU of kind 'primary'")
    roles = [e.role for e in ecus]
    if len(set(roles)) != len(roles):
        raise InvalidInput("ECU roles must be unique within a model")
    for slot in ecus:
        if slot.kind not in ECU_KINDS:
            raise InvalidInput(f"ECU {slot.role!r}: kind must be one of {ECU_KINDS}")
    model = VehicleModel(
        name=name,
        description=description,
        ecus=[ModelEcu(role=e.role, hardware_id=e.hardware_id, kind=e.kind) for e in ecus],
    )
    session.add(model)
    session.flush()
    audit.record(session, actor, "model.create", "vehicle_model", model.id, name=name)
    return model


def get_model(session: Session, name: str) -> VehicleModel:
    model = session.scalar(
        select(VehicleModel)
        .where(VehicleModel.name == name)
        .options(selectinload(VehicleModel.ecus))
    )
    if model is None:
        raise NotFound(f"no vehicle model named {name!r}")
    return model


def list_models(session: Session) -> list[VehicleModel]:
    return list(
        session.scalars(
            select(VehicleModel).options(selectinload(VehicleModel.ecus)).order_by(VehicleModel.id)
        )
    )


def create_baseline(
    session: Session, actor: str, model_name: str, name: str, targets: list[str]
) -> Baseline:
    """A baseline: one package per hardware id of the model, named by Uptane target."""
    model = get_model(session, model_name)
    hardware = {slot.hardware_id for slot in model.ecus}
    exists = select(Baseline.id).where(Baseline.model_id == model.id, Baseline.name == name)
    if session.scalar(exists) is not None:
        raise Conflict(f"model {model_name!r} already has a baseline {name!r}")
    items: dict[str, BaselineItem] = {}
    for target in targets:
        package = session.scalar(select(Package).where(Package.target == target))
        if package is None:
            raise NotFound(f"baseline names unknown package target {target!r}")
        matching = hardware.intersection(package.hardware_ids)
        if not matching:
            raise InvalidInput(f"package {target!r} fits no ECU of model {model_name!r}")
        for hardware_id in matching:
            if hardware_id in items:
                raise InvalidInput(f"baseline names two packages for hardware id {hardware_id!r}")
            items[hardware_id] = BaselineItem(hardware_id=hardware_id, package=package)
    baseline = Baseline(model_id=model.id, name=name, items=list(items.values()))
    session.add(baseline)
    session.flush()
    audit.record(
        session, actor, "baseline.create", "baseline", baseline.id, model=model_name, name=name
    )
    return baseline


def get_baseline(session: Session, model: VehicleModel, name: str) -> Baseline:
    baseline = session.scalar(
        select(Baseline).where(Baseline.model_id == model.id, Baseline.name == name)
    )
    if baseline is None:
        raise NotFound(f"model {model.name!r} has no baseline {name!r}")
    return baseline


def register_vehicle(
    session: Session,
    actor: str,
    vin: str,
    model_name: str,
    ecus: list[EcuSpec],
    *,
    baseline_name: str | None = None,
) -> Vehicle:
    """A vehicle whose ECUs fill its model's topology exactly (each slot once)."""
    if not VIN.match(vin):
        raise InvalidInput(f"VIN {vin!r} is not 17 characters of A-Z/0-9 without I, O, Q")
    if session.scalar(select(Vehicle.id).where(Vehicle.vin == vin)) is not None:
        raise Conflict(f"vehicle {vin} is already registered")
    model = get_model(session, model_name)
    expected = sorted(slot.hardware_id for slot in model.ecus)
    if sorted(e.hardware_id for e in ecus) != expected:
        raise InvalidInput(
            f"ECUs of {vin} do not match model {model_name!r}: expected hardware ids {expected}"
        )
    primary_hw = next(s.hardware_id for s in model.ecus if s.kind == "primary")
    if [e.primary for e in ecus].count(True) != 1 or not any(
        e.primary and e.hardware_id == primary_hw for e in ecus
    ):
        raise InvalidInput(f"exactly one ECU, with hardware id {primary_hw!r}, must be primary")
    serials = [e.serial for e in ecus]
    if len(set(serials)) != len(serials):
        raise InvalidInput("ECU serials must be unique")
    taken = session.scalar(select(Ecu.serial).where(Ecu.serial.in_(serials)))
    if taken is not None:
        raise Conflict(f"ECU serial {taken!r} belongs to another vehicle")
    for spec in ecus:
        check_public_key(spec.public_key, f"ECU {spec.serial}")
    baseline = get_baseline(session, model, baseline_name) if baseline_name else None
    vehicle = Vehicle(
        vin=vin,
        model_id=model.id,
        baseline_id=baseline.id if baseline else None,
        ecus=[
            Ecu(
                serial=e.serial,
                hardware_id=e.hardware_id,
                is_primary=e.primary,
                public_key=e.public_key,
            )
            for e in ecus
        ],
    )
    session.add(vehicle)
    session.flush()
    audit.record(session, actor, "vehicle.register", "vehicle", vin, model=model_name)
    return vehicle


def get_vehicle(session: Session, vin: str) -> Vehicle:
    vehicle = session.scalar(
        select(Vehicle)
        .where(Vehicle.vin == vin)
        .options(
            selectinload(Vehicle.ecus),
            selectinload(Vehicle.model),
            selectinload(Vehicle.baseline),
        )
    )
    if vehicle is None:
        raise NotFound(f"unknown VIN {vin}")
    return vehicle


def list_vehicles(
    session: Session, model_name: str | None = None, limit: int = 100, after_id: int = 0
) -> list[Vehicle]:
    stmt = select(Vehicle).where(Vehicle.id > after_id).order_by(Vehicle.id)
    if model_name is not None:
        stmt = stmt.join(VehicleModel).where(VehicleModel.name == model_name)
    stmt = stmt.options(selectinload(Vehicle.ecus), selectinload(Vehicle.model))
    return list(session.scalars(stmt.limit(max(1, min(limit, 1000)))))


def ecu_history(session: Session, serial: str) -> list[EcuVersion]:
    """Every image an ECU has reported, oldest first."""
    ecu_id = session.scalar(select(Ecu.id).where(Ecu.serial == serial))
    if ecu_id is None:
        raise NotFound(f"unknown ECU serial {serial!r}")
    stmt = select(EcuVersion).where(EcuVersion.ecu_id == ecu_id).order_by(EcuVersion.id)
    return list(session.scalars(stmt))
