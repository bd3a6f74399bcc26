"""``redstonectl``: the operator's and the HMI's command for the Master over D-Bus (docs/dbus.md).

It speaks only D-Bus: ``org.redstone.Master1`` for the vehicle's campaign,
``org.redstone.Sub1`` (``--service sub``) for the slots of the domain
controller it runs on. Who may do what is the bus policy's business
(``systemd/org.redstone.Master.conf``); redstonectl reports a refusal in one
line and an exit code a script can branch on:

* 0 — done;
* 1 — refused: a D-Bus error from the service (not allowed, no campaign
  waits, past the commit point …), or the campaign ``install`` waited for
  failed;
* 2 — usage: a wrong option, duration or bundle path;
* 3 — the service is not reachable: no bus, not running, or it left the bus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, InvalidAddressError

from redstone_agent.cli.common import setup_logging
from redstone_agent.errors import RedstoneError
from redstone_agent.master.dbus_api import BUS_NAME, INTERFACE, OBJECT_PATH

PROG = "redstonectl"
ENV_ADDRESS = "REDSTONE_DBUS_ADDRESS"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130

SUB_BUS_NAME = "org.redstone.Sub"
"""The Sub's names (``redstone_agent.sub.dbus_api``; not imported: it pulls in the Sub engine)."""
SUB_OBJECT_PATH = "/org/redstone/Sub"
SUB_INTERFACE = "org.redstone.Sub1"

PROPERTIES = "org.freedesktop.DBus.Properties"
SETTLED = frozenset({"done", "failed", "idle"})
"""Where a campaign ends: all-new, all-old, or the offer withdrawn."""
NOT_THERE = frozenset(
    {
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.NoReply",
        "org.freedesktop.DBus.Error.Disconnected",
        "org.freedesktop.DBus.Error.TimedOut",
        "org.freedesktop.DBus.Error.Timeout",
        "org.freedesktop.DBus.Error.NoServer",
    }
)
"""D-Bus errors that mean the service is not there to answer (exit 3)."""
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

DURATION = re.compile(r"(?P<number>[0-9]+)(?P<unit>[smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_UINT32 = 2**32 - 1

MASTER_ONLY = frozenset(
    {"accept", "decline", "postpone", "install", "rollback", "logs", "check-now"}
)
SUB_ONLY = frozenset({"mark-good", "mark-bad"})

DESCRIPTION = """\
Watch and steer the vehicle's update campaign over D-Bus.

The Master OTA daemon (org.redstone.Master on the system bus) runs the
campaign: it asks for consent, waits for a safe vehicle state, updates every
ECU and ends all-new or all-old. redstonectl reads its state, answers its
questions (accept, decline, postpone), installs an offline bundle, stops or
rolls back a campaign, and follows its progress and log. On a domain
controller, mark-good and mark-bad go to the local Sub (org.redstone.Sub).

Everyone may read (status, logs); commanding needs root or group redstone.
"""
EPILOG = """\
examples:
  redstonectl status                        # campaign, state, every ECU
  redstonectl status --json | jq .progress  # what an HMI or a script reads
  redstonectl status --watch                # live, until Ctrl-C
  redstonectl accept                        # consent to the waiting campaign
  redstonectl postpone 2h                   # ask again in two hours (90s, 15m, 2h, 1d)
  redstonectl install ./spring-2027.rsb     # offline bundle; follows it to the end
  redstonectl install /media/usb/b.rsb --no-wait
  redstonectl logs -f -n 50                 # the Master's log, then follow it
  redstonectl mark-good                     # this domain controller's Sub: commit the slot
  redstonectl --bus session status          # a Master on the session bus (tests, the lab)

exit codes: 0 done, 1 refused by the service (or the installed campaign failed),
2 usage, 3 the service is not reachable.
bus: --bus system|session|ADDRESS, else $REDSTONE_DBUS_ADDRESS, else system.
"""


class CtlError(RedstoneError):
    """A one-line failure with the exit code that names its kind."""

    exit_code = EXIT_REFUSED


class Refused(CtlError):
    exit_code = EXIT_REFUSED


class UsageError(CtlError):
    exit_code = EXIT_USAGE


class Unreachable(CtlError):
    exit_code = EXIT_UNREACHABLE


# -- the command line ----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``2h``, ``1d`` -> seconds."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give a number and a unit, like 90s, 15m, 2h or 1d"
        )
    seconds = int(match["number"]) * UNIT_SECONDS[match["unit"]]
    if seconds > MAX_UINT32:
        raise argparse.ArgumentTypeError(f"{text!r} is too long")
    return seconds


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_UINT32:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines")
    return value


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--bus, --service, -v; accepted before and after the command."""
    unset: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--bus",
        default=unset,
        metavar="system|session|ADDRESS",
        help=f"the bus to use (default: ${ENV_ADDRESS}, else system)",
    )
    parser.add_argument(
        "--service",
        choices=("master", "sub"),
        default=unset,
        help="talk to the Master (default) or this node's Sub (default of mark-good/mark-bad)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _global_options(sub, top=False)
        return sub

    status = add(
        "status",
        "campaign, state, progress, every ECU, what blocks it",
        "examples:\n"
        "  redstonectl status --json | jq -r .state\n"
        "  redstonectl status --watch           # bars per ECU on a terminal, lines in a pipe\n"
        "  redstonectl status --watch --json    # one JSON document per change\n",
    )
    status.add_argument("--json", action="store_true", help="print the Status() JSON")
    status.add_argument(
        "--watch", action="store_true", help="keep following every change (Ctrl-C ends it)"
    )
    add("accept", "consent to the campaign waiting for it")
    add("decline", "refuse the waiting campaign: it ends all-old")
    postpone = add(
        "postpone",
        "ask for consent again later",
        "examples:\n  redstonectl postpone 90s\n  redstonectl postpone 15m\n"
        "  redstonectl postpone 2h\n  redstonectl postpone 1d\n"
        "the Master accepts 1 s to 7 days.\n",
    )
    postpone.add_argument(
        "duration", metavar="DURATION", type=parse_duration, help="90s, 15m, 2h or 1d"
    )
    add("cancel", "stop the campaign: untouched ECUs stay, touched ones roll back")
    install = add(
        "install",
        "verify and install an offline bundle (USB, workshop)",
        "The Master verifies the bundle exactly like an online campaign (Uptane,\n"
        "this vehicle only) and runs it. redstonectl sends the bundle's absolute\n"
        "path, so the Master (root) must be able to see that file: not in a\n"
        "private /tmp. It follows the campaign until it ends: exit 0 when every\n"
        "ECU runs its new image, 1 when it failed (all-old).\n"
        "examples:\n"
        "  redstonectl install /media/usb/spring-2027.rsb\n"
        "  redstonectl install spring-2027.rsb --no-wait && redstonectl status --watch\n",
    )
    install.add_argument("bundle", metavar="BUNDLE", type=Path, help="the bundle file")
    install.add_argument(
        "--no-wait", action="store_true", help="return once the Master started the campaign"
    )
    add("rollback", "roll every touched ECU back now (before the commit point)")
    add("check-now", "make the Master poll the cloud now")
    add("mark-good", "Sub: commit the running slot after a healthy boot")
    add("mark-bad", "Sub: reject the running slot; the node falls back")
    logs = add(
        "logs",
        "the Master's recent log lines",
        "examples:\n  redstonectl logs -n 100\n  redstonectl logs -f | grep adas\n",
    )
    logs.add_argument(
        "-n", "--lines", type=_non_negative, default=20, metavar="N", help="how many (20)"
    )
    logs.add_argument("-f", "--follow", action="store_true", help="then follow new lines")
    return parser


# -- talking to the bus ----------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """Which D-Bus object a command talks to."""

    label: str
    bus_name: str
    path: str
    interface: str


MASTER = Service("the Master", BUS_NAME, OBJECT_PATH, INTERFACE)
SUB = Service("the Sub", SUB_BUS_NAME, SUB_OBJECT_PATH, SUB_INTERFACE)


@dataclass(frozen=True)
class BusChoice:
    bus_type: BusType
    address: str | None
    label: str


def choose_bus(option: str | None) -> BusChoice:
    """--bus, else $REDSTONE_DBUS_ADDRESS, else the system bus."""
    value = option or os.environ.get(ENV_ADDRESS) or "system"
    if value == "system":
        return BusChoice(BusType.SYSTEM, None, "the system bus")
    if value == "session":
        return BusChoice(BusType.SESSION, None, "the session bus")
    if ":" in value:
        return BusChoice(BusType.SYSTEM, value, f"the bus at {value}")
    raise UsageError(f"--bus {value!r}: give system, session or a D-Bus address (unix:path=…)")


class Client:
    """One connection and the service it talks to; D-Bus errors become CtlErrors."""

    def __init__(self, bus: MessageBus, service: Service, where: BusChoice) -> None:
        self.bus = bus
        self.service = service
        self.where = where

    @classmethod
    async def connect(cls, service: Service, where: BusChoice) -> Client:
        try:
            bus = await MessageBus(bus_address=where.address, bus_type=where.bus_type).connect()
        except InvalidAddressError as exc:
            raise UsageError(f"--bus: not a D-Bus address: {exc}") from None
        except (OSError, AuthError, EOFError) as exc:
            raise Unreachable(f"cannot connect to {where.label}: {_reason(exc)}") from None
        return cls(bus, service, where)

    def not_running(self) -> Unreachable:
        return Unreachable(
            f"{self.service.label} is not running: no {self.service.bus_name} on {self.where.label}"
        )

    async def call(
        self,
        command: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        serial: int = 0,
    ) -> list[Any]:
        """Call a method of the service; ``command`` names it in an error."""
        message = Message(
            destination=self.service.bus_name,
            path=self.service.path,
            interface=self.service.interface,
            member=member,
            signature=signature,
            body=body or [],
            serial=serial,
        )
        return await self._send(command, message)

    async def bus_call(self, member: str, signature: str, body: list[Any]) -> list[Any]:
        """A call to the bus daemon itself (AddMatch)."""
        message = Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member=member,
            signature=signature,
            body=body,
        )
        return await self._send(member, message)

    async def _send(self, command: str, message: Message) -> list[Any]:
        try:
            reply = await self.bus.call(message)
        except (OSError, EOFError) as exc:
            raise Unreachable(f"lost {self.where.label}: {_reason(exc)}") from None
        if reply is None:  # only for NO_REPLY_EXPECTED calls
            return []
        if reply.message_type is MessageType.ERROR:
            raise self._error(command, reply)
        return list(reply.body)

    def _error(self, command: str, reply: Message) -> CtlError:
        name = reply.error_name or "?"
        text = " ".join(str(reply.body[0]).split()) if reply.body else ""
        if name in NOT_THERE:
            return self.not_running()
        if name == ACCESS_DENIED:
            who = (
                "root and group 'redstone' may command; everyone may read"
                if self.service is MASTER
                else "only root and group 'redstone' may use the Sub's API"
            )
            return Refused(f"{command}: not allowed for this user ({who})")
        for interface in (INTERFACE, SUB_INTERFACE):
            if name.startswith(f"{interface}.Error."):
                code = name.removeprefix(f"{interface}.Error.")
                return Refused(f"{command} refused ({code}): {text}")
        return Refused(f"{command} failed ({name}): {text}")

    def disconnect(self) -> None:
        self.bus.disconnect()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- following the Master -------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One thing that happened on the bus, in wire order.

    kind: ``state`` (state, detail), ``progress`` (percent, ecu, phase),
    ``properties`` (name -> value), ``log`` (line), ``reply`` (the marked
    reply arrived), ``gone`` (the Master left the bus), ``lost`` (the bus
    connection closed).
    """

    kind: str
    args: tuple[Any, ...] = ()


class Watch:
    """The Master's signals and its leaving the bus, as a queue of :class:`Event`."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._marked = -1
        client.bus.add_message_handler(self._on_message)
        self._connection = asyncio.get_running_loop().create_task(self._until_disconnected())

    async def _until_disconnected(self) -> None:
        """The bus itself going away ends a watch too (not only the Master leaving it)."""
        with contextlib.suppress(Exception):
            await self.client.bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # dbus-fast leaves it unannotated
        self.events.put_nowait(Event("lost"))

    @classmethod
    async def start(cls, client: Client) -> Watch:
        """Subscribe; every signal the Master sends after this returns is seen."""
        watch = cls(client)
        service = client.service
        await client.bus_call(
            "AddMatch", "s", [f"type='signal',sender='{service.bus_name}',path='{service.path}'"]
        )
        await client.bus_call(
            "AddMatch",
            "s",
            [
                "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                f"member='NameOwnerChanged',arg0='{service.bus_name}'"
            ],
        )
        return watch

    def mark_reply(self) -> int:
        """A serial for the next call: its reply is queued as a ``reply`` event
        between the signals sent before it and those sent after."""
        self._marked = self.client.bus.next_serial()
        return self._marked

    def _on_message(self, message: Message) -> None:
        event = self._event(message)
        if event is not None:
            self.events.put_nowait(event)

    def _event(self, message: Message) -> Event | None:
        kind = message.message_type
        if kind in (MessageType.METHOD_RETURN, MessageType.ERROR):
            return Event("reply") if message.reply_serial == self._marked else None
        if kind is not MessageType.SIGNAL:
            return None
        if message.sender == "org.freedesktop.DBus" and message.member == "NameOwnerChanged":
            name, _old, new = message.body
            return Event("gone") if name == self.client.service.bus_name and not new else None
        if message.path != self.client.service.path:
            return None
        if message.interface == PROPERTIES and message.member == "PropertiesChanged":
            changed = {name: variant.value for name, variant in message.body[1].items()}
            return Event("properties", (changed,))
        if message.interface != INTERFACE:
            return None
        if message.member == "StateChanged":
            return Event("state", tuple(message.body))
        if message.member == "ProgressChanged":
            return Event("progress", tuple(message.body))
        if message.member == "LogLine":
            return Event("log", tuple(message.body))
        return None

    async def next(self) -> Event:
        event = await self.events.get()
        if event.kind == "gone":
            raise Unreachable(f"{self.client.service.label} left {self.client.where.label}")
        if event.kind == "lost":
            raise Unreachable(f"lost {self.client.where.label}")
        return event

    async def batch(self) -> list[Event]:
        """The next event and every one already queued behind it (one change of the
        record arrives as PropertiesChanged, StateChanged and ProgressChanged)."""
        events = [await self.next()]
        while not self.events.empty():
            events.append(await self.next())
        return events


def say(line: str) -> None:
    """One line on stdout, now (a pipe must see it before the next change)."""
    print(line, flush=True)


def plain_lines(event: Event) -> list[str]:
    """What a change looks like without a terminal: one line per change."""
    if event.kind == "state":
        state, detail = event.args
        return [f"state: {state}" + (f" ({detail})" if detail else "")]
    if event.kind == "progress":
        percent, ecu, phase = event.args
        return [f"progress: {percent}% {phase}" + (f" {ecu}" if ecu else "")]
    if event.kind == "properties":
        (changed,) = event.args
        lines = []
        if "BlockedBy" in changed:
            lines.append(f"blocked by: {changed['BlockedBy'] or 'nothing'}")
        if changed.get("LastError"):
            lines.append(f"error: {changed['LastError']}")
        return lines
    return []


def snapshot_lines(status: dict[str, Any]) -> list[str]:
    """The plain lines that describe where the campaign is now."""
    progress = status.get("progress", {})
    lines = plain_lines(Event("state", (status["state"], status.get("detail", ""))))
    lines += plain_lines(
        Event(
            "progress",
            (progress.get("percent", 0), progress.get("ecu", ""), progress.get("phase", "")),
        )
    )
    if status.get("blocked_by"):
        lines.append(f"blocked by: {status['blocked_by']}")
    return lines


def ecu_percent(ecu: dict[str, Any]) -> int:
    """One ECU's bar: its bytes while it receives its image, full once past that."""
    if ecu.get("step") in ("pending", "installing"):
        total = int(ecu.get("bytes_total") or 0)
        return 100 * int(ecu.get("bytes_done") or 0) // total if total else 0
    return 100


def render(status: dict[str, Any]) -> Any:
    """The live view on a terminal: the campaign, one bar per ECU, what blocks it."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    progress = status.get("progress", {})
    title = Text()
    title.append(status.get("campaign") or "no campaign", style="bold")
    title.append(f"  {status['state']}", style="cyan")
    if status.get("detail"):
        title.append(f"  {status['detail']}")
    rows = Table.grid(padding=(0, 1))
    for _ in range(5):
        rows.add_column()
    for serial, ecu in status.get("ecus", {}).items():
        percent = ecu_percent(ecu)
        busy = serial == progress.get("ecu")
        rows.add_row(
            Text(serial, style="bold" if busy else ""),
            ProgressBar(total=100, completed=percent, width=30),
            Text(f"{percent:3d}%"),
            Text(ecu.get("step", "")),
            Text(f"{ecu.get('old') or '?'} -> {ecu.get('new', '')}", style="dim"),
        )
    parts: list[Any] = [title, rows]
    parts.append(Text(f"{progress.get('percent', 0)}% {progress.get('phase', '')}"))
    if status.get("blocked_by"):
        parts.append(Text(f"blocked by: {status['blocked_by']}", style="yellow"))
    if status.get("error"):
        parts.append(Text(f"error: {status['error']}", style="red"))
    return Group(*parts)


CHANGES = frozenset({"state", "progress", "properties"})


class Display:
    """How a watch shows the campaign: ``live`` (rich, on a terminal), ``plain``
    (a line per change) or ``json`` (the Status() document, compact, per change)."""

    def __init__(self, client: Client, mode: str) -> None:
        self.client = client
        self.mode = mode
        self._view: Any = None
        self._last_json = ""

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        if self.mode != "live":
            yield
            return
        from rich.live import Live

        with Live(auto_refresh=False, transient=False) as view:
            self._view = view
            yield
            self._view = None

    async def status(self) -> dict[str, Any]:
        (text,) = await self.client.call("status", "Status")
        status: dict[str, Any] = json.loads(text)
        return status

    async def start(self) -> None:
        """Show where the campaign is now."""
        status = await self.status()
        if self.mode == "plain":
            for line in snapshot_lines(status):
                say(line)
        else:
            self._redraw(status)

    async def show(self, events: list[Event]) -> None:
        if self.mode == "plain":
            for event in events:
                for line in plain_lines(event):
                    say(line)
        elif any(event.kind in CHANGES for event in events):
            self._redraw(await self.status())

    def _redraw(self, status: dict[str, Any]) -> None:
        if self._view is not None:
            self._view.update(render(status), refresh=True)
        elif self.mode == "json":
            text = json.dumps(status)
            if text != self._last_json:
                self._last_json = text
                say(text)


def display_mode(args: argparse.Namespace) -> str:
    if getattr(args, "json", False):
        return "json"
    return "live" if sys.stdout.isatty() else "plain"


# -- the commands ----------------------------------------------------------------------


async def cmd_status(client: Client, args: argparse.Namespace) -> int:
    if client.service is SUB:
        if args.watch:
            raise UsageError("status --watch follows the Master only")
        (text,) = await client.call("status", "Status")
        say(text if args.json else describe_sub(json.loads(text)))
        return EXIT_OK
    if not args.watch:
        (text,) = await client.call("status", "Status")
        say(text if args.json else describe_master(json.loads(text)))
        return EXIT_OK
    watch = await Watch.start(client)  # first: no change after the snapshot is missed
    display = Display(client, display_mode(args))
    with display.shown():
        await display.start()
        while True:
            await display.show(await watch.batch())


def describe_master(status: dict[str, Any]) -> str:
    """The human status: ``redstone-master status``'s view, with progress and blocker."""
    from redstone_agent.cli.master import describe

    lines = [describe(status)]
    if status["state"] not in SETTLED:
        progress = status.get("progress", {})
        lines.append(
            f"progress: {progress.get('percent', 0)}% {progress.get('phase', '')}"
            + (f" ({progress['ecu']})" if progress.get("ecu") else "")
        )
    if status.get("blocked_by"):
        lines.append(f"blocked by: {status['blocked_by']}")
    return "\n".join(lines)


def describe_sub(status: dict[str, Any]) -> str:
    lines = [f"state: {status['state']}"]
    if status.get("target"):
        lines.append(f"target: {status['target']}")
    if status.get("bytes_total"):
        lines.append(f"bytes: {status['bytes_done']}/{status['bytes_total']}")
    if status.get("error") not in (None, "OK"):
        lines.append(f"error: {status['error']}")
    if status.get("detail"):
        lines.append(f"detail: {status['detail']}")
    return "\n".join(lines)


SIMPLE: dict[str, tuple[str, str]] = {
    # command -> (D-Bus method, what to print when it is done)
    "accept": ("Accept", "accepted: the campaign goes on when the vehicle allows"),
    "decline": ("Decline", "declined: the campaign ends all-old"),
    "cancel": ("Cancel", "cancelled"),
    "rollback": ("Rollback", "rolling back every touched ECU"),
    "check-now": ("CheckNow", "asked the Master to check for updates now"),
    "mark-good": ("MarkGood", "marked good: the running slot is committed"),
    "mark-bad": ("MarkBad", "marked bad: the node falls back to its previous slot"),
}


async def cmd_simple(client: Client, args: argparse.Namespace) -> int:
    member, done = SIMPLE[args.command]
    await client.call(args.command, member)
    say(done)
    return EXIT_OK


async def cmd_postpone(client: Client, args: argparse.Namespace) -> int:
    await client.call("postpone", "Postpone", "u", [args.duration])
    say(f"postponed: asking again in {args.duration} s")
    return EXIT_OK


async def cmd_install(client: Client, args: argparse.Namespace) -> int:
    bundle = args.bundle
    if args.no_wait:
        (name,) = await client.call("install", "InstallBundle", "s", [str(bundle)])
        say(f"installing campaign {name} from {bundle}")
        return EXIT_OK
    watch = await Watch.start(client)  # before the call: no step of the campaign is missed
    (name,) = await client.call("install", "InstallBundle", "s", [str(bundle)])
    say(f"installing campaign {name} from {bundle}")
    display = Display(client, display_mode(args))
    state, detail = "", ""
    with display.shown():
        while state not in SETTLED:
            events = await watch.batch()
            await display.show(events)
            for event in events:
                if event.kind == "state" and state not in SETTLED:
                    state, detail = event.args
    if state == "done":
        say(f"campaign {name}: done ({detail})" if detail else f"campaign {name}: done")
        return EXIT_OK
    status = await display.status()
    why = status.get("error") or detail or state
    raise Refused(f"campaign {name} {'failed' if state == 'failed' else 'ended'}: {why}")


async def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    if not args.follow:
        (lines,) = await client.call("logs", "Logs", "u", [args.lines])
        for line in lines:
            say(line)
        return EXIT_OK
    watch = await Watch.start(client)
    # LogLine signals queued before Logs() answered are already in its answer.
    serial = watch.mark_reply()
    (lines,) = await client.call("logs", "Logs", "u", [args.lines], serial=serial)
    for line in lines:
        say(line)
    replied = False
    while True:
        event = await watch.next()
        if event.kind == "reply":
            replied = True
        elif event.kind == "log" and replied:
            say(event.args[0])


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Any]] = {
    "status": cmd_status,
    "postpone": cmd_postpone,
    "install": cmd_install,
    "logs": cmd_logs,
    **dict.fromkeys(SIMPLE, cmd_simple),
}


def choose_service(args: argparse.Namespace) -> Service:
    """--service, else sub for mark-good/mark-bad and master for the rest."""
    command = args.command
    wanted = args.service or ("sub" if command in SUB_ONLY else "master")
    if wanted == "sub" and command in MASTER_ONLY:
        raise UsageError(f"{command} is a Master command: drop --service sub")
    if wanted == "master" and command in SUB_ONLY:
        raise UsageError(f"{command} is a Sub command (this node's slots): use --service sub")
    return SUB if wanted == "sub" else MASTER


def check_arguments(args: argparse.Namespace) -> None:
    """What argparse cannot check, before any bus is touched."""
    if args.command == "install":
        # The Master's working directory is not ours: send the absolute path.
        args.bundle = args.bundle.expanduser().resolve()
        if not args.bundle.is_file():
            raise UsageError(f"install: no such bundle file: {args.bundle}")


async def execute(args: argparse.Namespace) -> int:
    service = choose_service(args)
    where = choose_bus(args.bus)
    check_arguments(args)
    client = await Client.connect(service, where)
    try:
        result: int = await COMMANDS[args.command](client, args)
        return result
    finally:
        client.disconnect()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, args.verbose)
    if not args.verbose:
        logging.getLogger("dbus_fast").setLevel(logging.CRITICAL)
    following = (args.command == "status" and args.watch) or (
        args.command == "logs" and args.follow
    )
    try:
        return asyncio.run(execute(args))
    except CtlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if following:
            return EXIT_OK  # Ctrl-C is how a watch ends
        if args.command == "install":
            print(
                f"{PROG}: stopped watching; the campaign goes on "
                "('redstonectl status --watch' follows it, 'redstonectl cancel' stops it)",
                file=sys.stderr,
            )
        else:
            print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `redstonectl status | head`: the reader left, which is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
