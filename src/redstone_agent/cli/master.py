"""``redstone-master``: the Master OTA on the TBox (the whole-vehicle campaign)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from redstone_agent.cli.common import new_parser, run_main, setup_logging
from redstone_agent.errors import RedstoneError

PROG = "redstone-master"
DEFAULT_CONFIG = Path(os.environ.get("REDSTONE_MASTER_CONFIG", "/etc/redstone/master.toml"))
DESCRIPTION = """\
Run and inspect the vehicle's update campaigns.

The Master polls the cloud, verifies every campaign with Uptane (director and
image repository), downloads the images into its cache, and updates every ECU
of the vehicle — Subs over SOME/IP, legacy ECUs over UDS — so that the
campaign ends all-new or all-old, even across a power cut.
"""
EPILOG = """\
examples:
  redstone-master run                       # the daemon (what systemd starts)
  redstone-master status                    # campaign, state, every ECU
  redstone-master status --json | jq .last_report
  redstone-master check-now                 # poll the cloud now
  redstone-master accept                    # consent to the waiting campaign
states: idle, syncing, downloading, awaiting, transferring, processing,
activating, verifying, committing, done | rolling-back, failed (docs/master.md).
config: --config or $REDSTONE_MASTER_CONFIG, default /etc/redstone/master.toml ([master]).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="TBox config (TOML)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the Master OTA daemon (what systemd starts)")
    status = commands.add_parser("status", help="campaign, state, per-ECU progress, last report")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    commands.add_parser("check-now", help="make the running daemon poll the cloud now")
    commands.add_parser("accept", help="consent to the campaign waiting for it")
    commands.add_parser("decline", help="refuse the campaign waiting for consent")
    return parser


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def describe(status: dict[str, Any]) -> str:
    """Human-readable status: one line for the campaign, one per ECU, then the last report."""
    lines = [f"state: {status['state']}" + (f" ({status['detail']})" if status["detail"] else "")]
    if status.get("daemon_running") is False:
        lines.append("daemon: not running (this is the last status it wrote)")
    if status["campaign"]:
        lines.append(f"campaign: {status['campaign']}")
    if status.get("error"):
        lines.append(f"error: {status['error']}")
    if status.get("blocked_by"):
        lines.append(f"blocked by: {status['blocked_by']}")
    for serial, ecu in status.get("ecus", {}).items():
        progress = ""
        if ecu["bytes_total"] and ecu["step"] in ("installing", "pending"):
            progress = f" {_mib(ecu['bytes_done'])}/{_mib(ecu['bytes_total'])}"
        lines.append(
            f"  {serial:<16} {ecu['transport']:<7} {ecu['old'] or '?'} -> {ecu['new']}: "
            f"{ecu['step']}{progress}" + (f" ({ecu['detail']})" if ecu["detail"] else "")
        )
    report = status.get("last_report")
    if report:
        lines.append(f"last report: {report['campaign']} {report['outcome']}")
        lines.extend(report_table(report))
        diagnostics = report.get("diagnostics")
        if isinstance(diagnostics, dict) and diagnostics.get("summary"):
            lines.append(f"UDS diagnostics: {diagnostics['summary']}")
    return "\n".join(lines)


def report_table(report: dict[str, Any]) -> list[str]:
    """The campaign's final report as an aligned table."""
    header = ("ECU", "transport", "old", "new", "outcome", "seconds", "downloaded", "saved")
    rows = [header] + [
        (
            e["serial"],
            e["transport"],
            e["old"] or "?",
            e["new"],
            e["outcome"],
            f"{e['seconds']:.1f}",
            _mib(e["bytes_downloaded"]),
            _mib(e["bytes_saved"]),
        )
        for e in report["ecus"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]


def execute(args: argparse.Namespace) -> int:
    from redstone_agent.master.topology import load_master_config

    if args.command == "run":
        from redstone_agent.master.daemon import run

        return run(args.config)
    from redstone_agent.master.statusfile import read_status, running_pid, signal_daemon

    config = load_master_config(args.config)
    if args.command == "status":
        status = read_status(config.state_dir)
        # status.json outlives the daemon: say whether anyone is still behind it.
        status["daemon_running"] = running_pid(config.state_dir) is not None
        if args.json:
            json.dump(status, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(describe(status))
        return 0
    if args.command == "check-now":
        pid = signal_daemon(config.state_dir, signal.SIGUSR1)
        print(f"asked redstone-master (pid {pid}) to poll now")
        return 0
    from redstone_agent.master.policy import ConsentStore

    status = read_status(config.state_dir)
    if status["state"] in ("idle", "done", "failed") or not status["campaign"]:
        raise RedstoneError(f"no campaign is waiting for consent (state: {status['state']})")
    ConsentStore(config.state_dir / "consent").answer(status["campaign"], args.command)
    signal_daemon(config.state_dir, signal.SIGUSR1)
    print(f"{args.command}ed campaign {status['campaign']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, args.verbose)
    return run_main(PROG, lambda: execute(args))


if __name__ == "__main__":
    sys.exit(main())
