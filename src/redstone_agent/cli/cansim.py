"""``redstone-cansim``: send the vehicle's state (speed, gear, ignition...) on a CAN bus."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from cantools.database.can import Database

from redstone_agent.cli.common import new_parser, run_main, setup_logging
from redstone_agent.errors import RedstoneError
from redstone_agent.vehicle.provider import open_bus
from redstone_agent.vehicle.signals import EXAMPLE_DBC, load_dbc
from redstone_agent.vehicle.simulator import (
    BUILTIN,
    DEFAULT_CYCLE_MS,
    CanSimulator,
    Scenario,
    StepEvent,
    find_scenario,
)

PROG = "redstone-cansim"

DEFAULT_DBC = Path(os.environ.get("REDSTONE_VEHICLE_DBC") or EXAMPLE_DBC)

DESCRIPTION = f"""\
Simulate the ECUs that put the vehicle's state on its CAN bus, so the Master's
vehicle-state preconditions ([master.vehicle] rules such as speed_kph <= 0 or
gear in ["P"]) can be tested without a vehicle. The frames are encoded with a
DBC file and each is sent at its DBC cycle time (GenMsgCycleTime, else
--cycle-ms). A scenario (TOML) is a list of steps, each lasting duration-s and
setting some signals; values are held until a later step changes them.

built-in scenarios (no file needed): {", ".join(BUILTIN)}
"""

EPILOG = """\
examples:
  redstone-cansim --interface socketcan --channel vcan0      # park-drive-park, example DBC
  redstone-cansim --interface udp_multicast --channel 239.74.163.2 \\
      --scenario etc/redstone/scenarios/driving-then-parked.toml --loop
  redstone-cansim --dbc /etc/redstone/vehicle.dbc --scenario my-car.toml --json

Runs the scenario once (forever with --loop) and exits 0, or on SIGINT/SIGTERM.
It prints one line per step (JSON with --json). udp_multicast leaves the host on
eth0 in the default network namespace: run it inside a namespace. Scenario
format, signals and rules: docs/vehicle.md.

dbc: --dbc or $REDSTONE_VEHICLE_DBC, default the example installed with
Redstone (etc/redstone/vehicle.dbc in the source tree), which the built-in
scenarios are written for.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument(
        "--dbc", type=Path, default=DEFAULT_DBC, help="DBC file that encodes the frames"
    )
    parser.add_argument(
        "--interface",
        default="socketcan",
        help="python-can interface: socketcan, udp_multicast, virtual... (default socketcan)",
    )
    parser.add_argument(
        "--channel", default="can0", help="python-can channel, e.g. vcan0 or a multicast group"
    )
    parser.add_argument(
        "--scenario",
        default="park-drive-park",
        help=f"scenario TOML file, or a built-in name ({', '.join(BUILTIN)}); "
        "default park-drive-park",
    )
    parser.add_argument(
        "--bus-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further python-can bus argument (repeatable), e.g. port=43114 hop_limit=0",
    )
    parser.add_argument("--loop", action="store_true", help="repeat the scenario until stopped")
    parser.add_argument(
        "--cycle-ms",
        type=int,
        default=DEFAULT_CYCLE_MS,
        help=f"cycle time of messages whose DBC gives none (default {DEFAULT_CYCLE_MS})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per step")
    return parser


def describe(event: StepEvent) -> str:
    """One human line for a step."""
    values = " ".join(f"{name}={value}" for name, value in sorted(event.values.items()))
    extra = "".join(
        f" {label}={','.join(names)}"
        for label, names in (("mute", event.mute), ("malformed", event.malformed))
        if names
    )
    loop = f" round {event.round}" if event.round > 1 else ""
    return (
        f"{PROG}: {event.scenario}{loop} step {event.step}/{event.steps} "
        f"({event.duration_s:g} s): {values}{extra}"
    )


def bus_options(items: list[str]) -> dict[str, int | str]:
    """``KEY=VALUE`` words as python-can keyword arguments (integers where they parse)."""
    options: dict[str, int | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise RedstoneError(f"--bus-option {item!r}: expected KEY=VALUE, e.g. port=43114")
        options[key] = int(value) if value.lstrip("-").isdigit() else value
    return options


async def play(args: argparse.Namespace, db: Database, scenario: Scenario) -> int:
    bus = open_bus(args.interface, args.channel, **bus_options(args.bus_option))

    def report(event: StepEvent) -> None:
        line = json.dumps(event.as_dict()) if args.json else describe(event)
        print(line, flush=True)

    try:
        simulator = CanSimulator(
            db, bus, scenario, loop=args.loop, default_cycle_ms=args.cycle_ms, on_step=report
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, simulator.stop)
        await simulator.run()
    finally:
        bus.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cycle_ms <= 0:
        parser.error("--cycle-ms must be positive")
    setup_logging(PROG, args.verbose)

    def run() -> int:
        db = load_dbc(args.dbc)
        scenario = find_scenario(args.scenario, db, dbc=str(args.dbc))
        return asyncio.run(play(args, db, scenario))

    return run_main(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
