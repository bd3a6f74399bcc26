"""The vehicle's body CAN bus in the lab: ``redstone-cansim`` says whether the car drives.

The Master reads speed, gear, battery voltage… from it (``[master.vehicle]``,
docs/vehicle.md) and holds UDS flashes and Sub reboots while the car drives.
The simulator runs on the TBox's node on its own ``udp_multicast`` group (the
lab's DoCAN bus has another), so it needs the lab's network namespaces; without
them the vehicle has no CAN bus and its state is not checked.

:meth:`VehicleBus.set` switches the car between ``driving`` and ``parked`` by
restarting the simulator with a one-step scenario held for a day: the test or
the demo decides when the car stops, not a timer racing the campaign.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from redstone_agent.vvehicle.errors import VehicleError
from redstone_agent.vvehicle.netlab import Node, executable, stop_process
from redstone_agent.vvehicle.plan import _list, _q

VEHICLE_CAN_GROUP = "239.74.163.3"
"""udp_multicast group of the body CAN bus (the DoCAN bus uses another)."""
VEHICLE_CAN_PORT = 43114
"""Its own UDP port: the DoCAN bus's sockets (port 43113) never see these frames."""
RULES = ["speed_kph <= 0", 'gear in ["P"]', "battery_v >= 12.2"]
"""Checked before every UDS flash and Sub reboot, and watched while they run."""
FRESHNESS_MS = 1000
STATES: dict[str, dict[str, object]] = {
    "driving": {
        "ignition": "ON",
        "gear": "D",
        "speed_kph": 80,
        "parking_brake": "released",
        "battery_v": 14.2,
        "soc_pct": 64,
    },
    "parked": {
        "ignition": "ACC",
        "gear": "P",
        "speed_kph": 0,
        "parking_brake": "engaged",
        "battery_v": 12.6,
        "soc_pct": 64,
    },
}
HOLD_S = 86400


def example_dbc() -> Path:
    """The DBC shipped with the package (``etc/redstone/vehicle.dbc`` is the same file)."""
    return Path(__file__).resolve().parent.parent / "vehicle" / "vehicle.dbc"


class VehicleBus:
    """``redstone-cansim`` on *node*, playing one vehicle state at a time."""

    def __init__(self, node: Node, dbc: Path | None = None) -> None:
        self.node = node
        self.dbc = dbc or example_dbc()
        self.state = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.node.workdir / "cansim.log"

    def master_table(self) -> str:
        """The ``[master.vehicle]`` table that reads this bus."""
        return "\n".join(
            [
                "[master.vehicle]",
                f"dbc = {_q(self.dbc)}",
                'interface = "udp_multicast"',
                f"channel = {_q(VEHICLE_CAN_GROUP)}",
                f"bus-options = {{ port = {VEHICLE_CAN_PORT} }}",
                f"rules = {_list(RULES)}",
                f"freshness-ms = {FRESHNESS_MS}",
                'on-break = "finish"',
                "",
            ]
        )

    def set(self, state: str) -> None:
        """Make the car *state* (``driving`` or ``parked``) from now on."""
        if state not in STATES:
            raise VehicleError(f"unknown vehicle state {state!r} (known: {', '.join(STATES)})")
        scenario = self.node.workdir / f"cansim-{state}.toml"
        signals = ", ".join(f"{k} = {_value(v)}" for k, v in STATES[state].items())
        scenario.write_text(
            f"name = {_q(state)}\n[[step]]\nduration-s = {HOLD_S}\nsignals = {{ {signals} }}\n"
        )
        self.stop()
        self._proc = self.node.spawn(
            [
                executable("redstone-cansim"),
                "--dbc",
                str(self.dbc),
                "--interface",
                "udp_multicast",
                "--channel",
                VEHICLE_CAN_GROUP,
                # TTL 0: the frames stay in the TBox's namespace (sender and reader are
                # both there) instead of flooding every node's link, the cloud's too.
                "--bus-option",
                f"port={VEHICLE_CAN_PORT}",
                "--bus-option",
                "hop_limit=0",
                "--scenario",
                str(scenario),
            ],
            log=self.log,
        )
        self.state = state

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None


def _value(value: object) -> str:
    return _q(value) if isinstance(value, str) else str(value)
