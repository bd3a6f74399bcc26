"""``redstone-ecusim``: run a simulated ECU (UDS bootloader) on ISO-TP and/or DoIP."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
import tomllib
from pathlib import Path

from redstone_agent.cli.common import new_parser, run_main, setup_logging
from redstone_agent.config import ConfigError, from_dict
from redstone_agent.ecusim.config import SimConfig, load_sim
from redstone_agent.ecusim.runner import Simulator

PROG = "redstone-ecusim"

DESCRIPTION = """\
Simulate an ECU the way its bootloader behaves, so you can test flashing
without hardware. The ECU answers UDS (ISO 14229) on ISO-TP over a python-can
bus ([docan]: socketcan, virtual, udp_multicast) and/or as a DoIP entity
([doip]: TCP diagnostics + UDP vehicle identification). It has application
and bootloader modes, sessions with an S3 timeout, SecurityAccess with an
attempt counter and lockout, a flash model (erase, program-only-erased, CRC
check), an optional second bank, and injectable faults ([faults]: dropped or
delayed responses, NRC 0x78 storms, NRC 0x21, reset or power loss
mid-transfer, wrong checksum, boot failure).
"""

EPILOG = """\
examples:
  redstone-ecusim etc/redstone/ecus/sim-bcm.toml
  redstone-ecusim etc/redstone/ecus/sim-bcm.toml --tcp-port 0 --json   # free port, machine-readable
  redstone-ecusim etc/redstone/ecus/sim-bcm.toml --fault wrong_checksum=true

Once listening it prints one line (JSON with --json) naming the ports, then
serves until SIGINT/SIGTERM. Config format and fault options: docs/uds.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument("config", type=Path, help="simulator TOML file")
    parser.add_argument("--host", help="DoIP bind address (overrides [doip].host)")
    parser.add_argument("--tcp-port", type=int, help="DoIP TCP port, 0 = any free port")
    parser.add_argument("--udp-port", type=int, help="DoIP UDP discovery port, 0 = any free port")
    parser.add_argument("--channel", help="python-can channel (overrides [docan].channel)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set one [faults] option, VALUE as in the TOML file, e.g. pending_storm=20 or "
        "drop_services=[0x36]; a bare NAME means true (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the ready line as JSON")
    return parser


def parse_fault(item: str) -> tuple[str, object]:
    """``NAME=VALUE`` with VALUE in TOML syntax, as in the file's ``[faults]``; bare NAME = true."""
    name, _, value = item.partition("=")
    if not value:
        return name, True
    try:
        return name, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(
            "--fault", name, f"{value!r} is not a TOML value (e.g. 3, 0.5, true, [0x36])"
        ) from None


def apply_overrides(config: SimConfig, args: argparse.Namespace) -> SimConfig:
    """Command-line options on top of the file."""
    doip, docan = config.doip, config.docan
    if doip is not None:
        changes = {
            k: v
            for k, v in (
                ("host", args.host),
                ("tcp_port", args.tcp_port),
                ("udp_port", args.udp_port),
            )
            if v is not None
        }
        doip = dataclasses.replace(doip, **changes)
    if docan is not None and args.channel:
        docan = dataclasses.replace(docan, channel=args.channel)
    faults = config.faults
    if args.fault:
        raw = dataclasses.asdict(faults) | dict(map(parse_fault, args.fault))
        faults = from_dict(raw, type(faults), source="--fault")
    return dataclasses.replace(config, doip=doip, docan=docan, faults=faults)


async def serve(config: SimConfig, as_json: bool) -> None:
    simulator = Simulator(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, simulator.stop)

    def ready(sim: Simulator) -> None:
        info: dict[str, object] = {"name": config.name, "mode": sim.ecu.mode}
        if sim.doip is not None:
            info |= {
                "doip_host": sim.doip.settings.host,
                "doip_tcp_port": sim.doip.tcp_port,
                "doip_udp_port": sim.doip.udp_port,
                "logical_address": sim.doip.settings.logical_address,
            }
        if config.docan is not None:
            info |= {
                "can": f"{config.docan.interface}:{config.docan.channel}",
                "tx_id": config.docan.tx_id,
                "rx_id": config.docan.rx_id,
            }
        if as_json:
            print(json.dumps(info), flush=True)
        else:
            print(
                f"{PROG}: {config.name} listening " + " ".join(f"{k}={v}" for k, v in info.items()),
                flush=True,
            )

    await simulator.run(ready)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, args.verbose)

    def run() -> int:
        config = apply_overrides(load_sim(args.config), args)
        asyncio.run(serve(config, args.json))
        return 0

    return run_main(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
