"""The Master's D-Bus API (``org.redstone.Master1``) for redstonectl and HMIs (docs/dbus.md).

One object, ``/org/redstone/Master`` on the name ``org.redstone.Master``,
published over the :class:`~redstone_agent.master.control.MasterControl` port:

* properties an HMI binds to — ``State``, ``Progress``, ``Campaign``,
  ``BlockedBy``, ``LastError``, ``Detail`` — all read-only, all announced
  with ``PropertiesChanged`` when their value changes;
* signals — ``StateChanged`` on every journaled transition, ``ProgressChanged``
  on every progress step, ``LogLine`` for every log line;
* methods — the commands of the port, ``Status`` (the JSON ``--json`` prints)
  and ``Logs``.

Every property and signal is derived from one snapshot (:class:`View`) taken
in :meth:`MasterInterface.publish`, so a ``Get`` after a signal never sees
an older value than the signal announced. Every failure comes back as a
D-Bus error ``org.redstone.Master1.Error.<code>`` with one line of text:
a :class:`ControlError` names its own code, anything else is ``Internal``
(the traceback goes to the Master's log, never onto the bus).
Who may call what is the bus's business: ``systemd/org.redstone.Master.conf``.
"""

import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from dbus_fast import BusType, DBusError, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature, DBusStr, DBusUInt32
from dbus_fast.constants import NameFlag, PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property, method, signal

from redstone_agent.errors import RedstoneError
from redstone_agent.master.control import (
    ControlError,
    MasterControl,
    campaign_info,
    progress,
)
from redstone_agent.master.record import CampaignRecord

log = logging.getLogger(__name__)

BUS_NAME = "org.redstone.Master"
OBJECT_PATH = "/org/redstone/Master"
INTERFACE = "org.redstone.Master1"
ERROR_PREFIX = f"{INTERFACE}.Error."
INTERNAL = "Internal"
"""The error code of every failure that is not a :class:`ControlError`."""
MAX_LOG_LINES = 10_000
"""``Logs`` returns at most this many lines, whatever the caller asks for."""
MAX_MESSAGE = 500
"""Error messages on the bus are cut to this many characters."""

ProgressValue = tuple[int, str, str]
"""``(uss)``: percent 0..100, the ECU in work ("" when none), the phase."""
CampaignValue = tuple[str, dict[str, tuple[str, str]], int, str]
"""``(sa{s(ss)}ts)``: name, serial -> (old, new), bytes to download, release-notes URL."""

DBusProgress = Annotated[ProgressValue, DBusSignature("(uss)")]
DBusCampaign = Annotated[CampaignValue, DBusSignature("(sa{s(ss)}ts)")]
DBusStrings = Annotated[list[str], DBusSignature("as")]
DBusProgressArgs = Annotated[ProgressValue, DBusSignature("uss")]
DBusStateArgs = Annotated[tuple[str, str], DBusSignature("ss")]

_ERROR_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_T = TypeVar("_T")


def wire_text(text: str) -> str:
    """A string D-Bus accepts: valid UTF-8 without NUL.

    The bus daemon drops the connection of a sender whose message holds an
    invalid string, so a NUL in an ECU's detail or a lone surrogate from a
    decoded file name must not reach the marshaller.
    """
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def one_line(text: str) -> str:
    """Whitespace collapsed to single spaces, cut to :data:`MAX_MESSAGE` characters."""
    line = " ".join(wire_text(text).split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


def error_name(code: str) -> str:
    """``org.redstone.Master1.Error.<code>``."""
    return ERROR_PREFIX + code


def dbus_error(exc: Exception) -> DBusError:
    """Any failure of a command as a named D-Bus error with a one-line message."""
    if isinstance(exc, ControlError) and _ERROR_CODE.fullmatch(exc.code):
        return DBusError(error_name(exc.code), one_line(str(exc) or exc.code))
    if isinstance(exc, RedstoneError):
        log.warning("D-Bus command failed: %s", exc)
        text = str(exc)
    else:
        log.exception("D-Bus command failed unexpectedly")
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return DBusError(error_name(INTERNAL), one_line(f"internal error in the Master: {text}"))


async def _guard(action: Awaitable[_T]) -> _T:
    try:
        return await action
    except DBusError:
        raise
    except Exception as exc:
        raise dbus_error(exc) from exc


def _guard_call(function: Callable[[], _T]) -> _T:
    try:
        return function()
    except DBusError:
        raise
    except Exception as exc:
        raise dbus_error(exc) from exc


def status_json(record: CampaignRecord) -> str:
    """What ``Status()`` returns and ``redstonectl status --json`` prints:
    ``record.to_dict()`` plus ``progress`` (percent, ecu, phase)."""
    data = record.to_dict()
    now = progress(record)
    data["progress"] = {"percent": now.percent, "ecu": now.ecu, "phase": now.phase}
    return json.dumps(data, indent=2, default=str)


@dataclass(frozen=True)
class View:
    """Every property value, taken from one record (what one ``publish`` announces)."""

    key: tuple[str, int]
    """(state, seq): a new key is a new journaled transition."""
    state: str
    detail: str
    progress: ProgressValue
    campaign: CampaignValue
    blocked_by: str
    last_error: str

    @classmethod
    def of(cls, record: CampaignRecord) -> "View":
        now = progress(record)
        info = campaign_info(record)
        ecus = {wire_text(s): (wire_text(o), wire_text(n)) for s, (o, n) in info.ecus.items()}
        return cls(
            key=(record.state.value, record.seq),
            state=wire_text(record.state.value),
            detail=wire_text(record.detail),
            progress=(now.percent, wire_text(now.ecu), wire_text(now.phase)),
            campaign=(
                wire_text(info.name),
                ecus,
                max(0, min(info.size, 2**64 - 1)),
                wire_text(info.release_notes_url),
            ),
            blocked_by=wire_text(record.blocked_by),
            last_error=wire_text(record.error),
        )

    def properties(self) -> dict[str, Any]:
        """D-Bus property name -> value."""
        return {
            "State": self.state,
            "Progress": self.progress,
            "Campaign": self.campaign,
            "BlockedBy": self.blocked_by,
            "LastError": self.last_error,
            "Detail": self.detail,
        }


class MasterInterface(ServiceInterface):
    """``org.redstone.Master1`` over a :class:`MasterControl`.

    :meth:`publish` and :meth:`log_line` are the control's listeners
    (:func:`export` subscribes them); both run on the bus's event loop and
    never raise into the caller.
    """

    def __init__(self, control: MasterControl) -> None:
        super().__init__(INTERFACE)
        self._control = control
        self._view = View.of(control.record)

    # -- updates from the Master -----------------------------------------------

    def publish(self, record: CampaignRecord) -> None:
        """Take a new snapshot of ``record`` and announce what changed:
        ``PropertiesChanged`` (the changed properties), then ``StateChanged``
        when the record made a transition, then ``ProgressChanged``."""
        try:
            after = View.of(record)
        except Exception:  # a bug in deriving the view: say so, keep the Master running
            log.exception("cannot show the campaign record on D-Bus")
            return
        before, self._view = self._view, after
        old, new = before.properties(), after.properties()
        changed = {name: value for name, value in new.items() if old[name] != value}
        try:
            if changed:
                self.emit_properties_changed(changed)
            if after.key != before.key:
                self.state_changed(after.state, after.detail)
            if after.progress != before.progress:
                self.progress_changed(*after.progress)
        except Exception:  # the bus is gone; the next Get still answers from the view
            log.debug("could not signal the campaign record on D-Bus", exc_info=True)

    def log_line(self, line: str) -> None:
        """Send one log line as ``LogLine``; silent on failure (logging it would loop)."""
        with contextlib.suppress(Exception):
            self.log_line_signal(wire_text(line))

    # -- properties ---------------------------------------------------------------

    @dbus_property(access=PropertyAccess.READ, name="State")
    def state_property(self) -> DBusStr:
        return self._view.state

    @dbus_property(access=PropertyAccess.READ, name="Progress")
    def progress_property(self) -> DBusProgress:
        return self._view.progress

    @dbus_property(access=PropertyAccess.READ, name="Campaign")
    def campaign_property(self) -> DBusCampaign:
        return self._view.campaign

    @dbus_property(access=PropertyAccess.READ, name="BlockedBy")
    def blocked_by_property(self) -> DBusStr:
        return self._view.blocked_by

    @dbus_property(access=PropertyAccess.READ, name="LastError")
    def last_error_property(self) -> DBusStr:
        return self._view.last_error

    @dbus_property(access=PropertyAccess.READ, name="Detail")
    def detail_property(self) -> DBusStr:
        return self._view.detail

    # -- methods --------------------------------------------------------------------

    @method(name="CheckNow")
    def check_now(self) -> None:
        _guard_call(self._control.check_now)

    @method(name="Accept")
    async def accept(self) -> None:
        await _guard(self._control.accept())

    @method(name="Decline")
    async def decline(self) -> None:
        await _guard(self._control.decline())

    @method(name="Postpone")
    async def postpone(self, seconds: DBusUInt32) -> None:
        await _guard(self._control.postpone(float(seconds)))

    @method(name="Cancel")
    async def cancel(self) -> None:
        await _guard(self._control.cancel())

    @method(name="InstallBundle")
    async def install_bundle(self, path: DBusStr) -> DBusStr:
        return wire_text(await _guard(self._install_bundle(path)))

    async def _install_bundle(self, path: str) -> str:
        # The daemon's working directory is not the caller's: only an absolute
        # path names the file the caller means.
        if not path or not Path(path).is_absolute():
            raise ControlError("BadArgument", f"the bundle path must be absolute: {path!r}")
        return await self._control.install_bundle(Path(path))

    @method(name="Rollback")
    async def rollback(self) -> None:
        await _guard(self._control.rollback())

    @method(name="Status")
    def status(self) -> DBusStr:
        return _guard_call(lambda: status_json(self._control.record))

    @method(name="Logs")
    def logs(self, lines: DBusUInt32) -> DBusStrings:
        count = min(lines, MAX_LOG_LINES)
        if not count:
            return []
        found = _guard_call(lambda: self._control.recent_logs(count))
        return [wire_text(line) for line in found[-count:]]

    # -- signals --------------------------------------------------------------------

    @signal(name="StateChanged")
    def state_changed(self, state: str, detail: str) -> DBusStateArgs:
        return (state, detail)

    @signal(name="ProgressChanged")
    def progress_changed(self, percent: int, ecu: str, phase: str) -> DBusProgressArgs:
        return (percent, ecu, phase)

    @signal(name="LogLine")
    def log_line_signal(self, line: str) -> DBusStr:
        return line


async def export(
    control: MasterControl, bus_type: str = "system", address: str | None = None
) -> tuple[MessageBus, MasterInterface]:
    """Connect to the system or session bus (or *address*), export the interface,
    own ``org.redstone.Master`` and subscribe to the control's changes and logs.

    Refuses (RedstoneError, connection closed) when another process owns the
    name: two Masters must not answer for one vehicle.
    """
    kind = BusType.SYSTEM if bus_type == "system" else BusType.SESSION
    bus = await MessageBus(bus_address=address, bus_type=kind).connect()
    try:
        interface = MasterInterface(control)
        bus.export(OBJECT_PATH, interface)
        reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            raise RedstoneError(f"{BUS_NAME} is already owned on the bus: is a Master running?")
    except BaseException:
        bus.disconnect()
        raise
    # No await from here on: nothing can change between the subscription and
    # the snapshot that catches up with what changed while the name was requested.
    control.subscribe(interface.publish, interface.log_line)
    interface.publish(control.record)
    return bus, interface
