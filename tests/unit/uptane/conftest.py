"""Fixtures: a genuinely signed image repository + director pair for one vehicle."""

from __future__ import annotations

import pytest

from redstone_agent.uptane.simulator import UptaneSimulator

SUPPLIER_PATHS = ["brakes/*"]


@pytest.fixture
def sim() -> UptaneSimulator:
    """TBox image in the OEM role, brake image signed by a supplier delegation."""
    sim = UptaneSimulator.create()
    sim.delegate("supplier-brakes", SUPPLIER_PATHS)
    sim.add_image("tbox/tbox-2.0.img", b"tbox image v2", ["hw-tbox"], 5, extra={"version": "2.0"})
    sim.add_image("brakes/abs-1.4.bin", b"abs firmware", ["hw-abs"], 3, role="supplier-brakes")
    sim.assign("TBOX-1", "hw-tbox", "tbox/tbox-2.0.img", commit=False)
    sim.assign("ABS-1", "hw-abs", "brakes/abs-1.4.bin")
    return sim
