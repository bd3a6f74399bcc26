"""What the vehicle integration tests share: the example DBC and how a park -> drive -> park
run must look to the preconditions provider."""

from __future__ import annotations

from collections.abc import Iterable, Sized
from pathlib import Path
from typing import TypeVar

DBC = Path(__file__).resolve().parents[3] / "etc" / "redstone" / "vehicle.dbc"

R = TypeVar("R", bound=Sized)
"""What the provider reported after one wake: its blockers' reasons (empty: clear)."""


def park_drive_park(observed: Iterable[R]) -> tuple[list[R], list[R], list[R]]:
    """The reports grouped by "blocked or not", which must go blocked (nothing received
    yet), clear (parked), blocked (driving), clear (parked), blocked (the car went
    silent); the three blocked groups: unknown, driving, silent."""
    reports = list(observed)
    phases: list[list[R]] = []
    for reasons in reports:
        if phases and bool(phases[-1][-1]) == bool(reasons):
            phases[-1].append(reasons)
        else:
            phases.append([reasons])
    assert [bool(phase[0]) for phase in phases] == [True, False, True, False, True], reports
    unknown, _, driving, _, silent = phases
    return unknown, driving, silent
