"""The simulator and CanPreconditions on one python-can ``virtual`` bus, in one process.

The car parks, drives and parks again; the provider must see every change
through ``wait_change`` (no polling), with blockers naming the live values,
and must report the signals stale once the car goes silent. Always runs: no
root, no kernel CAN.
"""

from __future__ import annotations

import asyncio
import itertools
import tomllib

import can

from redstone_agent.vehicle.config import VehicleSettings
from redstone_agent.vehicle.provider import CanPreconditions
from redstone_agent.vehicle.signals import load_dbc
from redstone_agent.vehicle.simulator import CanSimulator, StepEvent, parse_scenario
from tests.integration.vehicle.support import DBC, park_drive_park

DEADLINE_S = 60.0
"""Only a broken implementation gets near this; nothing asserts how long a wait took."""

SCENARIO = """\
name = "quick-park-drive-park"
[[step]]
duration-s = 1.0
signals = { ignition = "ON", gear = "P", speed_kph = 0, battery_v = 12.6, soc_pct = 80 }
[[step]]
duration-s = 1.0
signals = { gear = "D", speed_kph = 37.5 }
[[step]]
duration-s = 1.0
signals = { gear = "P", speed_kph = 0 }
"""

_channels = itertools.count()


def test_park_drive_park_on_a_virtual_bus() -> None:
    observed = asyncio.run(asyncio.wait_for(drive(), DEADLINE_S))
    unknown, driving, silent = park_drive_park(observed)
    assert (
        all(r.endswith("is unknown (never received)") for r in unknown[0]) and len(unknown[0]) == 3
    )
    assert (
        "speed_kph <= 0 fails: speed_kph = 37.5",
        'gear in ["P"] fails: gear = D',
    ) in driving
    # The car went silent: every rule fails as stale, and no frame woke anyone.
    assert all(" is stale (last seen " in r for r in silent[-1]) and len(silent[-1]) == 3


def all_stale(reasons: tuple[str, ...]) -> bool:
    return len(reasons) == 3 and all(" is stale " in r for r in reasons)


async def drive() -> list[tuple[str, ...]]:
    channel = f"vehicle-integration-{next(_channels)}"
    db = load_dbc(DBC)
    scenario = parse_scenario(tomllib.loads(SCENARIO), db, source="quick")
    settings = VehicleSettings(
        dbc=DBC,
        interface="virtual",
        channel=channel,
        rules=["speed_kph <= 0", 'gear in ["P"]', "battery_v >= 12.2"],
        download_rules=["soc_pct >= 30"],
        freshness_ms=400,
    )
    tx = can.Bus(interface="virtual", channel=channel)
    rx = can.Bus(interface="virtual", channel=channel)
    steps: list[StepEvent] = []
    observed: list[tuple[str, ...]] = []
    try:
        async with CanPreconditions(settings, bus=rx) as provider:
            observed.append(tuple(b.reason for b in provider.blockers("flash")))
            simulator = CanSimulator(db, tx, scenario, on_step=steps.append)
            playing = asyncio.create_task(simulator.run())
            # Until the scenario has ended and all its signals have gone stale.
            while not (playing.done() and all_stale(observed[-1])):
                await provider.wait_change(10.0)
                observed.append(tuple(b.reason for b in provider.blockers("flash")))
            await playing
            assert provider.store.malformed == {}
    finally:
        tx.shutdown()
        rx.shutdown()
    assert [s.step for s in steps] == [1, 2, 3]
    return observed
