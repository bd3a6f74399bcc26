"""``python -m tools.qemu``: build the test board's artifacts or boot a board by hand.

Examples::

    python -m tools.qemu build            # fetch/build kernel, initramfs, disk (cached)
    python -m tools.qemu boot /tmp/board  # new provisioned board there, one power cycle
    python -m tools.qemu boot /tmp/board  # again: the same disk boots once more

Each boot's full serial console is kept as WORKDIR/boot-N.log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tools.qemu.board import BOOT_TIMEOUT_S, Board, disk_template
from tools.qemu.disk import FILE_NAME
from tools.qemu.machine import missing_requirements

from redstone_agent.errors import RedstoneError


def _build(args: argparse.Namespace) -> int:
    template = disk_template()
    if args.json:
        print(json.dumps({"disk_template": str(template)}))
    else:
        print(f"disk template: {template}")
    return 0


def _boot(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir
    if (workdir / FILE_NAME).exists():
        board = Board.open(workdir)
    else:
        board = Board.create(workdir)
        board.provision("A")
        logging.info("new board in %s: slot A committed and primary", workdir)
    record = board.power_on(args.timeout)
    state = board.state().to_env() if record.ending != "timeout" else None
    summary = {
        "uboot_slot": record.uboot_slot,
        "linux_slot": record.slot,
        "release": record.release,
        "health": record.health,
        "committed": record.committed,
        "ending": record.ending,
        "console": str(workdir / f"boot-{board.boots}.log"),
        "env": state,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for line in record.script_lines:
            print(f"u-boot  {line}")
        for line in record.guest_lines:
            print(f"guest   {line}")
        print(f"ended by {record.ending}; console log {summary['console']}")
    return 0 if record.ending != "timeout" else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors are one line on stderr and exit status 1."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.qemu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or find cached) kernel, initramfs and disk")
    boot = commands.add_parser("boot", help="power-cycle the board in WORKDIR once")
    boot.add_argument("workdir", type=Path, help="board directory (created if missing)")
    boot.add_argument(
        "--timeout", type=float, default=BOOT_TIMEOUT_S, help="seconds before QEMU is stopped"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    reason = missing_requirements()
    if reason is not None:
        print(f"error: cannot run QEMU here: {reason}", file=sys.stderr)
        return 1
    try:
        return _build(args) if args.command == "build" else _boot(args)
    except RedstoneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
