"""``redstone-vehicle``: the virtual vehicle — cloud, TBox, Subs and UDS ECUs on one machine."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from redstone_agent.cli.common import new_parser, run_main, setup_logging
from redstone_agent.vvehicle.errors import VehicleError
from redstone_agent.vvehicle.plan import VERSIONS
from redstone_agent.vvehicle.report import CampaignResult, table
from redstone_agent.vvehicle.vehicle import StatusHook, VirtualVehicle

PROG = "redstone-vehicle"

DESCRIPTION = """\
Run a whole virtual vehicle on this machine and update it over the air:
the cloud backend (SQLite, TLS, its real admin and device APIs), the TBox
(redstone-master), two domain controllers (redstone-sub with its own
someipyd, file-backed A/B slots, a real U-Boot env) and two legacy ECUs
(redstone-ecusim on DoCAN and DoIP), a body CAN bus carrying the car's
speed, gear and battery voltage (redstone-cansim), and a D-Bus on which
the Master publishes org.redstone.Master1 for redstonectl. Everything is
provisioned the way a
real programme does it: PKI and vehicle certificate, model and vehicle with
every ECU's key, images signed offline with redstone-repo, server-side
deltas, a campaign.

As root every node gets its own network namespace; otherwise each node runs
on its own loopback address and the DoCAN ECU is left out (udp_multicast
CAN needs a private network namespace). Progress goes to stderr; results to
stdout. Everything started is stopped on exit, on Ctrl-C and on errors.
"""

EPILOG = """\
commands:
  run   build the vehicle, run campaign 1 (every ECU 1.0.0 -> 2.0.0) while the
        car drives: the Master holds flashes and reboots until the car is parked,
        then goes on by itself; print its summary (with the DTCs the update left);
        then campaign 2 (-> 3.0.0), which asks for consent (accepted with
        redstonectl) and in which one UDS ECU fails its check routine, and check
        that every ECU is back on 2.0.0
  up    build the vehicle, start the Master, offer campaign 1 and keep running
        until Ctrl-C, for experiments (it prints where everything is)

examples:
  sudo redstone-vehicle run
  redstone-vehicle run --json > result.json        # without root: no DoCAN ECU
  sudo redstone-vehicle up --workdir /tmp/car --keep
  redstonectl --bus unix:path=/tmp/car/lab/master/bus.sock status --watch
  redstone-cloud --config /tmp/car/cloud/cloud.toml campaign list

Exit status: 0 when both campaigns ended as promised (all-new, then all-old),
1 otherwise or on any error (one line on stderr).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, DESCRIPTION, EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "build the vehicle and run both campaigns"),
        ("up", "build the vehicle and keep it running until Ctrl-C"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "--workdir",
            type=Path,
            help="where every file goes (default: a temporary directory, removed on exit)",
        )
        p.add_argument(
            "--keep", action="store_true", help="keep the work directory (logs, configs) on exit"
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return parser


def _say(line: str) -> None:
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


@contextmanager
def _workdir(path: Path | None, keep: bool) -> Iterator[Path]:
    """A fresh work directory; a temporary one is removed on exit unless *keep*."""
    if path is not None:
        if path.exists() and any(path.iterdir()):
            raise VehicleError(f"--workdir {path} is not empty (it would mix two vehicles)")
        path.mkdir(parents=True, exist_ok=True)
        made = path.resolve()
    else:
        made = Path(tempfile.mkdtemp(prefix="redstone-vehicle-"))
    try:
        yield made
    finally:
        if keep or path is not None:
            _say(f"files kept in {made}")
        else:
            shutil.rmtree(made, ignore_errors=True)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so teardown runs whatever stops us."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_run(args: argparse.Namespace) -> int:
    results: list[CampaignResult] = []
    with (
        _workdir(args.workdir, args.keep) as workdir,
        VirtualVehicle(workdir, progress=_say) as vehicle,
    ):
        _factory, new, newer = VERSIONS
        if vehicle.can is not None:
            vehicle.can.set("driving")
            _say("the car is driving (80 km/h, gear D) when campaign 1 arrives")
        first = vehicle.offer(new)
        results.append(
            vehicle.run_campaign(first, expected=new, on_status=_park_when_held(vehicle))
        )
        _emit(results[-1], args.json)
        vehicle.inject_check_failure()
        second = vehicle.offer(newer, consent=True)
        _say(f"{second} asks for the driver's consent")
        results.append(
            vehicle.run_campaign(second, expected=new, on_status=_accept_when_asked(vehicle))
        )
        _emit(results[-1], args.json)
    ok = (
        results[0].outcome == "updated"
        and results[0].consistent
        and results[1].outcome == "rolled-back"
        and results[1].consistent
    )
    if args.json:
        print(json.dumps({"ok": ok, "campaigns": [r.to_dict() for r in results]}, indent=2))
    _say("both campaigns ended as promised" if ok else "a campaign did not end as promised")
    return 0 if ok else 1


def _park_when_held(vehicle: VirtualVehicle) -> StatusHook:
    """Park the car once the Master shows it holds the campaign for it."""

    def hook(status: dict[str, Any]) -> None:
        held = str(status.get("blocked_by", ""))
        if vehicle.can is not None and vehicle.can.state == "driving" and held:
            _say(f"master holds the campaign while the car drives: {held}")
            vehicle.can.set("parked")
            _say("the car is parked (P, 0 km/h): the campaign goes on by itself")

    return hook


def _accept_when_asked(vehicle: VirtualVehicle) -> StatusHook:
    """Play the driver: accept on the HMI's D-Bus API (redstonectl) once asked."""
    answered = False

    def hook(status: dict[str, Any]) -> None:
        nonlocal answered
        if answered or status.get("consent") != "asked":
            return
        answered = True
        if vehicle.bus is None:
            vehicle.tbox.node.run(vehicle.tbox.command("accept"), timeout=20.0)
            _say("the driver accepted (redstone-master accept; no D-Bus here)")
            return
        line = vehicle.redstonectl("status").strip().splitlines()[0]
        _say(f"redstonectl status: {line}")
        vehicle.redstonectl("accept")
        _say("the driver accepted with redstonectl accept (org.redstone.Master1 on D-Bus)")

    return hook


def _emit(result: CampaignResult, as_json: bool) -> None:
    if not as_json:
        print(table(result), end="\n\n", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    with (
        _workdir(args.workdir, args.keep) as workdir,
        VirtualVehicle(workdir, progress=_say) as vehicle,
    ):
        campaign = vehicle.offer(VERSIONS[1])
        try:
            vehicle.tbox.start()
            _say("master started; it polls the cloud every few seconds")
        except VehicleError as exc:
            _say(f"master not started: {exc}")
        info = vehicle.summary() | {"campaign": campaign}
        print(json.dumps(info, indent=2) if args.json else _describe(info), flush=True)
        _say("running; Ctrl-C stops everything")
        while True:
            time.sleep(1.0)
    return 0


def _describe(info: dict[str, object]) -> str:
    nodes = info["nodes"]
    assert isinstance(nodes, dict)
    lines = [f"{key}: {info[key]}" for key in ("workdir", "vin", "cloud", "admin_token")]
    lines += [f"master config: {info['master_config']}", f"campaign: {info['campaign']}"]
    if info.get("dbus"):
        lines.append(f"try: redstonectl --bus {info['dbus']} status --watch")
    reach = f"--unix-socket {info['cloud_socket']} " if info.get("cloud_socket") else ""
    lines.append(f"try: curl {reach}--cacert {info['cloud_ca']} {info['cloud']}/healthz")
    lines += [
        f"node {name}: {node['ip']}" + (f" (netns {node['netns']})" if node["netns"] else "")
        for name, node in nodes.items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, args.verbose)
    if not args.verbose:
        # One progress line per step; the HTTP client's per-request lines only with -v.
        for noisy in ("httpx", "httpcore", "redstone_agent.delta"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    def go() -> int:
        with _terminate_as_interrupt():
            return cmd_run(args) if args.command == "run" else cmd_up(args)

    return run_main(PROG, go)


if __name__ == "__main__":
    sys.exit(main())
