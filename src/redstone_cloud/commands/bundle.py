"""``redstone-cloud bundle``: one vehicle's update as a file for USB/local install."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from redstone_cloud.backend import Backend
from redstone_cloud.commands import actor
from redstone_cloud.db.engine import transaction
from redstone_cloud.services import bundle


def cmd_bundle(backend: Backend, args: argparse.Namespace) -> Any:
    with transaction(backend.sessions) as session:
        plan = bundle.prepare(
            session, backend.director, args.vin, actor=actor(), campaign=args.campaign
        )
    output = Path(args.output)
    bundle.write(plan, backend.store, output)
    return {"file": str(output), **plan.summary()}


def add(sub: Any) -> None:
    parser = sub.add_parser(
        "bundle",
        help="write a vehicle's current update as an offline bundle (docs/bundle.md)",
        description="Publish the vehicle's director metadata for its assignment (as its"
        " first poll would) and write one tar file holding it, the image repository's"
        " metadata and the images, for installation from USB without the cloud. The"
        " vehicle verifies it exactly like an online update; it expires with the"
        " metadata inside (the director's timestamp: one day).",
    )
    parser.add_argument("vin")
    parser.add_argument("--output", "-o", required=True, help="the bundle file to write")
    parser.add_argument(
        "--campaign", help="refuse unless the vehicle's assignment is in this campaign"
    )
    parser.set_defaults(func=cmd_bundle)
