"""Is a campaign's software right for this vehicle? Pure, so every rule is table-tested.

An assignment maps each ECU to the package it gets. It is consistent when
every package fits some ECU of the vehicle, no ECU gets two packages, and no
ECU would go back to a lower release counter than the one it runs — or, when
no manifest told us yet, than its vehicle's baseline prescribes (the
anti-rollback rule the vehicle enforces too, so refusing early saves a failed
rollout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EcuState:
    serial: str
    hardware_id: str
    release_counter: int | None
    """Of the installed image when a manifest said so, else of the vehicle's baseline."""
    counter_source: str = "runs"
    """How the counter is known, for the message ("runs", "is on baseline 2027.1 at")."""


@dataclass(frozen=True)
class PackageRef:
    target: str
    hardware_ids: tuple[str, ...]
    release_counter: int


@dataclass(frozen=True)
class Plan:
    """Either ECU serial -> package, or the reasons there is none."""

    items: Mapping[str, PackageRef]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.items)


def plan_assignment(ecus: Sequence[EcuState], packages: Sequence[PackageRef]) -> Plan:
    """Which ECU gets which package, checked against the rules above."""
    items: dict[str, PackageRef] = {}
    problems: list[str] = []
    for package in packages:
        fitting = [ecu for ecu in ecus if ecu.hardware_id in package.hardware_ids]
        if not fitting:
            problems.append(f"no ECU fits {package.target} (hardware ids {package.hardware_ids})")
        for ecu in fitting:
            if ecu.serial in items:
                first = items[ecu.serial].target
                problems.append(f"ECU {ecu.serial} would get both {first} and {package.target}")
                continue
            if ecu.release_counter is not None and package.release_counter < ecu.release_counter:
                problems.append(
                    f"ECU {ecu.serial} {ecu.counter_source} release {ecu.release_counter}; "
                    f"{package.target} (release {package.release_counter}) would roll it back"
                )
                continue
            items[ecu.serial] = package
    return Plan(items, tuple(problems))
