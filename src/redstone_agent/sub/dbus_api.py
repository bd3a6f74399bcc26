"""The Sub's local D-Bus API (``org.redstone.Sub1``) for redstonectl and HMIs.

The same engine commands the Master reaches over SOME/IP, for a technician
on the node: status, mark-good (commit), mark-bad (rollback), and a local
install that still goes through the Sub's own Uptane verification.
Every error comes back as a D-Bus error named ``org.redstone.Sub1.Error.<CODE>``
(the SOME/IP result code names), with a one-line message.
"""

import json
import logging
from collections.abc import Awaitable
from dataclasses import asdict

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBytes, DBusStr, DBusUInt64
from dbus_fast.service import ServiceInterface, method, signal

from redstone_agent.errors import RedstoneError
from redstone_agent.someip.interface import ResultCode
from redstone_agent.someip.messages import InstallRequest, Status
from redstone_agent.sub.engine import Engine
from redstone_agent.sub.errors import SubError, wire_text

log = logging.getLogger(__name__)

BUS_NAME = "org.redstone.Sub"
OBJECT_PATH = "/org/redstone/Sub"
INTERFACE = "org.redstone.Sub1"


def status_json(status: Status) -> str:
    """The JSON form of a status used on D-Bus and by ``--json`` output."""
    data = asdict(status)
    data["state"] = status.state.name
    data["error"] = status.error.name
    return json.dumps(data, sort_keys=True)


def error_name(code: ResultCode) -> str:
    """The D-Bus error name of a result code: ``org.redstone.Sub1.Error.<CODE>``."""
    return f"{INTERFACE}.Error.{code.name}"


def dbus_error(exc: Exception) -> DBusError:
    """Every failure as a named D-Bus error with a one-line message (docs/someip.md §8).

    A SubError carries its own result code; any other RedstoneError (a full
    state disk, a slot layer refusal) and anything unexpected are INTERNAL —
    never dbus-fast's generic ServiceError with a Python traceback as text.
    """
    if isinstance(exc, SubError):
        code = exc.code
    else:
        code = ResultCode.INTERNAL
        if not isinstance(exc, RedstoneError):
            log.exception("D-Bus call failed unexpectedly")
    return DBusError(error_name(code), wire_text(str(exc) or type(exc).__name__))


async def _guard(action: Awaitable[None]) -> None:
    try:
        await action
    except DBusError:
        raise
    except Exception as exc:
        raise dbus_error(exc) from exc


class SubInterface(ServiceInterface):
    """Methods mirror the SOME/IP ones; ``StatusChanged`` mirrors the STATUS event."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(INTERFACE)
        self._engine = engine

    @method(name="Status")
    def status(self) -> DBusStr:
        return status_json(self._engine.status())

    @method(name="MarkGood")
    async def mark_good(self) -> None:
        await _guard(self._engine.commit())

    @method(name="MarkBad")
    async def mark_bad(self) -> None:
        await _guard(self._engine.rollback())

    @method(name="Cancel")
    async def cancel(self) -> None:
        await _guard(self._engine.cancel())

    @method(name="PutMetadata")
    async def put_metadata(self, bundle: DBusBytes) -> None:
        await _guard(self._engine.put_metadata(bytes(bundle)))

    @method(name="Install")
    async def install(
        self, target: DBusStr, url: DBusStr, sha256: DBusStr, length: DBusUInt64
    ) -> None:
        await _guard(self._install(target, url, sha256, length))

    async def _install(self, target: str, url: str, sha256: str, length: int) -> None:
        try:
            digest = bytes.fromhex(sha256)
        except ValueError:
            raise SubError("sha256 is not hex", ResultCode.MALFORMED) from None
        await self._engine.install(InstallRequest(target, url, digest, length))

    @signal(name="StatusChanged")
    def status_changed(self, status: str) -> DBusStr:
        return status


async def export(
    engine: Engine, bus_type: str, address: str | None = None
) -> tuple[MessageBus, SubInterface]:
    """Connect to the system or session bus (or *address*), export the object, own the name."""
    kind = BusType.SYSTEM if bus_type == "system" else BusType.SESSION
    bus = await MessageBus(bus_address=address, bus_type=kind).connect()
    interface = SubInterface(engine)
    bus.export(OBJECT_PATH, interface)
    await bus.request_name(BUS_NAME)
    return bus, interface
