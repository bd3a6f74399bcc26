"""``redstone-cloud user``: the web console's users (docs/console.md)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from redstone_cloud.backend import Backend
from redstone_cloud.commands import actor
from redstone_cloud.console import accounts
from redstone_cloud.console.auth import ROLES
from redstone_cloud.db.engine import transaction
from redstone_cloud.errors import InvalidInput

EXAMPLES = """\
examples:
  redstone-cloud --config cloud.toml user add alice --role admin
  printf '%s\\n' "$PASSWORD" | redstone-cloud --config cloud.toml user add bob --role viewer
  redstone-cloud --config cloud.toml user add ci --role viewer --password-file ci.pass
  redstone-cloud --config cloud.toml user list
  redstone-cloud --config cloud.toml --json user list
  redstone-cloud --config cloud.toml user set-role bob release-manager
  redstone-cloud --config cloud.toml user disable bob

roles, each allowed what the ones before it are:
  viewer           reads every page
  release-manager  also packages and campaigns
  admin            also PKI, users and tokens
"""


def read_password(path: Path | None = None) -> str:
    """The first line of ``path``; else twice from a prompt on a terminal, or the first
    line of standard input. Never from the command line, where other users of the
    machine could read it."""
    if path is not None:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise InvalidInput(f"--password-file {path}: {exc.strerror}") from None
        if not lines or not lines[0]:
            raise InvalidInput(f"--password-file {path}: its first line is empty")
        return lines[0]
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("password again: ") != first:
            raise InvalidInput("the two passwords differ")
        return first
    line = sys.stdin.readline()
    if not line:
        raise InvalidInput("no password on standard input (give it as one line)")
    return line.rstrip("\r\n")


def cmd_add(backend: Backend, args: argparse.Namespace) -> Any:
    password = read_password(args.password_file)
    with transaction(backend.sessions) as session:
        return accounts.user_dict(
            accounts.add_user(session, actor(), args.name, args.role, password)
        )


def cmd_list(backend: Backend, _args: argparse.Namespace) -> Any:
    with transaction(backend.sessions) as session:
        return [accounts.user_dict(u) for u in accounts.list_users(session)]


def cmd_disable(backend: Backend, args: argparse.Namespace) -> Any:
    with transaction(backend.sessions) as session:
        return accounts.user_dict(accounts.disable_user(session, actor(), args.name))


def cmd_set_role(backend: Backend, args: argparse.Namespace) -> Any:
    with transaction(backend.sessions) as session:
        return accounts.user_dict(accounts.set_role(session, actor(), args.name, args.role))


def add(sub: Any) -> None:
    parser = sub.add_parser(
        "user",
        help="the web console's users and their roles",
        description="Add, list, disable and change the role of the people who sign in to"
        " the console at /console/. Passwords are read from a prompt (twice) or, when"
        " standard input is not a terminal, as its first line; never from arguments.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    user_sub = parser.add_subparsers(dest="user_command", required=True)
    add_parser = user_sub.add_parser(
        "add",
        help="a new user (password from a prompt or stdin)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_parser.add_argument("name", help="lower-case letters, digits and . _ - @")
    add_parser.add_argument("--role", required=True, choices=ROLES)
    add_parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="read the password from the first line of FILE (for scripts; keep it 0600)",
    )
    add_parser.set_defaults(func=cmd_add)
    list_parser = user_sub.add_parser("list", help="every user with role and state")
    list_parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="one line of JSON"
    )
    list_parser.set_defaults(func=cmd_list)
    disable = user_sub.add_parser("disable", help="refuse the user's sign-ins; ends its sessions")
    disable.add_argument("name")
    disable.set_defaults(func=cmd_disable)
    role = user_sub.add_parser("set-role", help="give the user another role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(func=cmd_set_role)
