"""``redstone-sub``: the Sub OTA node command (A/B slots of a domain controller)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from redstone_agent.cli.common import ProgressLine, new_parser, run_main, setup_logging
from redstone_agent.config import load
from redstone_agent.slots import NodeState, NodeStatus, SlotManager, SlotsConfig
from redstone_agent.slots.scheme import other_slot

PROG = "redstone-sub"
DEFAULT_CONFIG = Path(os.environ.get("REDSTONE_SUB_CONFIG", "/etc/redstone/sub.toml"))

DESCRIPTION = """\
Update this node's A/B rootfs slots.

The running slot (redstone.slot= on the kernel command line) is never written.
An install streams an image into the other slot, verifies its length and
SHA-256, and makes it primary with a limited number of boot tries. After the
reboot, 'mark-good' commits it; if it never does, the bootloader returns to
the old slot and 'status' reports the rollback until 'acknowledge'.
"""

EPILOG = """\
typical cycle:
  redstone-sub install https://tbox.local/cache/rootfs-2.1.img.zst --sha256 3b1f…
  reboot
  redstone-sub status          # state: trying
  redstone-sub mark-good       # after your health check passed
  redstone-sub mark-good --if-trying   # a boot-assessment unit: no-op on a committed slot

states: idle, installing, installed (reboot pending), trying (uncommitted),
reverting (reboot to return), rolled-back (acknowledge to clear).
config: --config or $REDSTONE_SUB_CONFIG, default /etc/redstone/sub.toml ([slots]).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line, with help that explains the A/B cycle."""
    parser = new_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="node config (TOML)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser("status", help="show slots, state and any rollback")
    install = commands.add_parser("install", help="write an image into the inactive slot")
    install.add_argument("source", help="image path or http(s):// URL (plain, .xz or .zst)")
    install.add_argument(
        "--sha256", required=True, help="SHA-256 of the uncompressed image (64 hex digits)"
    )
    install.add_argument(
        "--size",
        type=int,
        help="length of the uncompressed image in bytes; with it, an interrupted install "
        "of the same plain image continues where it stopped (docs/transfer.md)",
    )
    good = commands.add_parser("mark-good", help="commit the running slot after a healthy boot")
    bad = commands.add_parser("mark-bad", help="reject the running slot; reboot to fall back")
    bad.add_argument("--reason", default="marked bad by the operator", help="recorded reason")
    for verdict in (good, bad):
        verdict.add_argument(
            "--if-trying",
            action="store_true",
            help="only when the running slot is on trial; otherwise change nothing (exit 0). "
            "For boot-assessment units: a committed slot must not be re-marked",
        )
    discard = commands.add_parser(
        "discard", help="undo an installed update before rebooting: the running slot stays"
    )
    ack = commands.add_parser("acknowledge", help="clear a reported rollback or failed install")
    init = commands.add_parser(
        "init-bootenv", help="provision the bootloader env: running slot committed and primary"
    )
    init.add_argument("--force", action="store_true", help="overwrite a valid A/B env")
    for sub in (status, install, good, bad, discard, ack, init):
        sub.add_argument("--json", action="store_true", help="print the resulting status as JSON")
    run = commands.add_parser("run", help="run the Sub OTA daemon (what systemd starts)")
    run.set_defaults(json=False)
    return parser


def load_manager(config_path: Path) -> SlotManager:
    """The slot manager for the ``[slots]`` section of the node's config."""
    return SlotManager(load(config_path, SlotsConfig, section="slots"))


def execute(args: argparse.Namespace) -> int:
    """Carry out one parsed command."""
    if args.command == "run":
        from redstone_agent.sub.daemon import run  # the daemon pulls in SOME/IP and D-Bus

        return run(args.config)
    manager = load_manager(args.config)
    status: NodeStatus
    if args.command == "status":
        status = manager.status()
    elif args.command == "install":
        progress = ProgressLine(f"slot {other_slot(manager.booted)}")
        try:
            status = manager.install(
                args.source, sha256=args.sha256, size=args.size, progress=progress
            )
        finally:
            progress.close()
    elif (
        args.command in ("mark-good", "mark-bad")
        and args.if_trying
        and ((status := manager.status()).state is not NodeState.TRYING)
    ):
        print(
            f"{PROG}: not on trial (state {status.state.value}): nothing to mark", file=sys.stderr
        )
    elif args.command == "mark-good":
        status = manager.mark_good()
    elif args.command == "mark-bad":
        status = manager.mark_bad(args.reason)
    elif args.command == "discard":
        status = manager.discard()
    elif args.command == "acknowledge":
        status = manager.acknowledge()
    else:
        status = manager.init_bootenv(force=args.force)
    if args.json:
        json.dump(status.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(status.describe())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``redstone-sub``."""
    args = build_parser().parse_args(argv)
    setup_logging(PROG, args.verbose)
    return run_main(PROG, lambda: execute(args))


if __name__ == "__main__":
    sys.exit(main())
