"""``redstone-cloud director``: the per-vehicle director's online keys."""

from __future__ import annotations

import argparse
from typing import Any

from redstone_cloud.backend import Backend
from redstone_cloud.commands import actor
from redstone_cloud.db.engine import transaction
from redstone_cloud.onlinekeys import ROLES
from redstone_cloud.services import director


def cmd_rotate_keys(backend: Backend, args: argparse.Namespace) -> Any:
    with transaction(backend.sessions) as session:
        return director.rotate_keys(
            session, backend.director_keys, actor(), args.role, to_token=args.to_token
        )


def add(sub: Any) -> None:
    parser = sub.add_parser("director", help="the director's online keys")
    director_sub = parser.add_subparsers(dest="director_command", required=True)
    rotate = director_sub.add_parser(
        "rotate-keys",
        help="new online keys (old ones kept as retired); every vehicle's director"
        " publishes a new root, signed by the old and the new root keys, at its next contact",
    )
    rotate.add_argument(
        "--role",
        action="append",
        choices=ROLES,
        help="rotate only this role (repeatable); default: root, targets, snapshot, timestamp",
    )
    rotate.add_argument(
        "--to-token",
        metavar="PKCS11_URI",
        help="make the new keys on this PKCS#11 token (object= is the label prefix); a role"
        " whose key is on a token already gets its new key there without this (docs/keys.md)",
    )
    rotate.set_defaults(func=cmd_rotate_keys)
