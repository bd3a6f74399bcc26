"""A real dbus-daemon, a MasterControl that records calls, and a raw D-Bus client.

The D-Bus layer is what these tests put under test: :class:`FakeControl`
stands in for the Master's controller (which has its own end-to-end tests)
and remembers every call, so a test can say "Postpone(900) reached the
control as postpone(900.0)".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from redstone_agent.master.control import ControlError, LogListener, RecordListener
from redstone_agent.master.dbus_api import BUS_NAME, INTERFACE, OBJECT_PATH, MasterInterface
from redstone_agent.master.dbus_api import export as export_master
from redstone_agent.master.record import CampaignRecord, EcuOutcome, EcuRecord
from redstone_agent.master.states import CampaignState
from redstone_agent.vvehicle.netlab import stop_process
from tests.support import require_tool

PROPERTIES = "org.freedesktop.DBus.Properties"
REPO = Path(__file__).resolve().parents[3]
POLICY = REPO / "systemd" / "org.redstone.Master.conf"

DEBIAN_DEFAULT_POLICY = """  <!-- What Debian's /usr/share/dbus-1/system.conf allows by default. -->
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
"""


def system_bus_config(socket: Path, extra: str) -> str:
    """A system-type bus on *socket* with Debian's default rules, then *extra*
    (``<include>``/``<includedir>``/``<servicedir>`` lines)."""
    return (
        "<busconfig>\n  <type>system</type>\n"
        f"  <listen>unix:path={socket}</listen>\n  <auth>EXTERNAL</auth>\n"
        f"{DEBIAN_DEFAULT_POLICY}  {extra}\n</busconfig>\n"
    )


def campaign_record() -> CampaignRecord:
    """A campaign half-way through transferring two ECUs."""
    return CampaignRecord(
        state=CampaignState.TRANSFERRING,
        seq=7,
        campaign="spring-2027",
        detail="streaming images",
        ecus={
            "adas-01": EcuRecord(
                "adas-01",
                "sub",
                "someip",
                old="adas-1.0.0",
                new="adas-2.0.0",
                step="installing",
                bytes_downloaded=300,
                bytes_done=150,
                bytes_total=300,
            ),
            "brake-01": EcuRecord(
                "brake-01",
                "uds",
                "uds",
                old="brake-1.0",
                new="brake-1.1",
                step="pending",
                bytes_downloaded=100,
                bytes_done=0,
                bytes_total=100,
            ),
        },
        release_notes_url="https://notes.example/spring-2027",
    )


@dataclass
class FakeControl:
    """A MasterControl that records calls and refuses what ``refuse`` names."""

    record: CampaignRecord = field(default_factory=CampaignRecord)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    refuse: dict[str, Exception] = field(default_factory=dict)
    """Method name (``accept``, ``install_bundle`` ...) -> what it raises."""
    logs: list[str] = field(default_factory=list)
    campaign_name: str = "bundle-campaign"
    log_while_read: str = ""
    """A line ``recent_logs`` logs (LogLine out first) before it answers: the race
    a follower must not print twice."""
    after_install: Callable[[], Coroutine[Any, Any, None]] | None = None
    """Run as a task after install_bundle answered: drives the campaign a watcher follows."""
    _record_listeners: list[RecordListener] = field(default_factory=list)
    _log_listeners: list[LogListener] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- the port ---------------------------------------------------------------

    def subscribe(self, on_record: RecordListener, on_log: LogListener) -> None:
        self._record_listeners.append(on_record)
        self._log_listeners.append(on_log)

    def recent_logs(self, lines: int) -> list[str]:
        self._called("recent_logs", lines)
        if self.log_while_read:
            self.log(self.log_while_read)
        return self.logs[-lines:] if lines else []

    def check_now(self) -> None:
        self._called("check_now", None)

    async def accept(self) -> None:
        self._called("accept", None)

    async def decline(self) -> None:
        self._called("decline", None)

    async def postpone(self, seconds: float) -> None:
        self._called("postpone", seconds)

    async def cancel(self) -> None:
        self._called("cancel", None)

    async def rollback(self) -> None:
        self._called("rollback", None)

    async def install_bundle(self, path: Path) -> str:
        self._called("install_bundle", path)
        if self.after_install is not None:
            task = asyncio.get_running_loop().create_task(self.after_install())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self.campaign_name

    # -- what a test does to it -------------------------------------------------------

    def commands(self) -> list[tuple[str, Any]]:
        """Every call but the reads (``recent_logs``)."""
        return [c for c in self.calls if c[0] != "recent_logs"]

    def change(self, **values: Any) -> None:
        """Change the record like the engine does (a new state is a journaled
        transition: seq + 1) and tell the listeners."""
        if "state" in values:
            self.record.seq += 1
        for name, value in values.items():
            setattr(self.record, name, value)
        self.notify()

    def notify(self) -> None:
        for listener in self._record_listeners:
            listener(self.record)

    def log(self, line: str) -> None:
        self.logs.append(line)
        for listener in self._log_listeners:
            listener(line)

    def _called(self, name: str, argument: Any) -> None:
        self.calls.append((name, argument))
        if name in self.refuse:
            raise self.refuse[name]


def refusal(code: str = "NotWaiting", message: str = "no campaign waits for consent") -> Exception:
    return ControlError(code, message)


def finish_campaign(
    control: FakeControl, outcome: CampaignState
) -> Callable[[], Coroutine[Any, Any, None]]:
    """An ``after_install`` that takes the campaign through transfer to ``outcome``."""

    async def run() -> None:
        control.record.ecus = {
            "adas-01": EcuRecord("adas-01", "sub", "someip", old="a-1", new="a-2", bytes_total=10)
        }
        control.change(state=CampaignState.TRANSFERRING, campaign=control.campaign_name)
        await asyncio.sleep(0)
        control.record.ecus["adas-01"].step = "installing"
        control.record.ecus["adas-01"].bytes_done = 5
        control.notify()
        await asyncio.sleep(0)
        control.record.ecus["adas-01"].bytes_done = 10
        control.record.ecus["adas-01"].step = "installed"
        if outcome is CampaignState.DONE:
            control.record.ecus["adas-01"].outcome = EcuOutcome.UPDATED
            control.change(state=CampaignState.PROCESSING)
            control.change(state=CampaignState.DONE)
        else:
            control.change(state=CampaignState.ROLLING_BACK, error="adas-01: health check failed")
            control.change(state=CampaignState.FAILED)

    return run


# -- the bus daemon -----------------------------------------------------------------


class BusDaemon:
    """A private dbus-daemon: session-type, or system-type from a config file."""

    def __init__(self, args: list[str], log: Path) -> None:
        require_tool("dbus-daemon")
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--print-address=1", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.proc.stdout is not None
        # The daemon prints its address once it listens: no polling for the socket.
        self.address = self.proc.stdout.readline().decode().strip()
        if not self.address:
            self.close()
            raise RuntimeError(f"dbus-daemon did not start: {log.read_text().strip()}")

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()


@contextlib.contextmanager
def session_bus(tmp_path: Path) -> Iterator[BusDaemon]:
    daemon = BusDaemon(["--session"], tmp_path / "dbus-daemon.log")
    try:
        yield daemon
    finally:
        daemon.close()


@contextlib.contextmanager
def system_bus(tmp_path: Path, policy: Path = POLICY) -> Iterator[BusDaemon]:
    """A system-type bus whose only service policy is ``policy`` (the repository's
    Master policy unless told otherwise).

    Its socket lives in a world-traversable directory so that ``nobody`` can
    connect (pytest's tmp dirs are root-only).
    """
    public = Path(tempfile.mkdtemp(prefix=f"rs-dbus-{os.getpid()}-"))
    public.chmod(0o755)
    config = tmp_path / "system-bus.conf"
    config.write_text(system_bus_config(public / "bus", f"<include>{policy}</include>"))
    try:
        daemon = BusDaemon([f"--config-file={config}"], tmp_path / "dbus-daemon.log")
        try:
            yield daemon
        finally:
            daemon.close()
    finally:
        shutil.rmtree(public, ignore_errors=True)


# -- a raw client -------------------------------------------------------------------


class Client:
    """A plain dbus-fast connection: calls by name and signature, signals in a queue."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.signals: asyncio.Queue[Message] = asyncio.Queue()
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(cls, address: str) -> Client:
        return cls(await MessageBus(bus_address=address).connect())

    def _on_message(self, message: Message) -> None:
        if message.message_type is MessageType.SIGNAL and message.path == OBJECT_PATH:
            self.signals.put_nowait(message)

    async def subscribe(self) -> None:
        """Receive every signal the Master object sends."""
        await self.bus_call("AddMatch", "s", [f"type='signal',path='{OBJECT_PATH}'"])

    async def bus_call(self, member: str, signature: str, body: list[Any]) -> Message:
        return await self.raw(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body,
            )
        )

    async def raw(self, message: Message) -> Message:
        reply = await self.bus.call(message)
        assert reply is not None
        return reply

    async def call(
        self, member: str, signature: str = "", body: list[Any] | None = None
    ) -> Message:
        """Call a Master1 method; the reply may be an error (the test looks at it)."""
        return await self.raw(
            Message(
                destination=BUS_NAME,
                path=OBJECT_PATH,
                interface=INTERFACE,
                member=member,
                signature=signature,
                body=body or [],
            )
        )

    async def get(self, name: str) -> tuple[str, Any]:
        """A property as (signature, value)."""
        reply = await self.raw(
            Message(
                destination=BUS_NAME,
                path=OBJECT_PATH,
                interface=PROPERTIES,
                member="Get",
                signature="ss",
                body=[INTERFACE, name],
            )
        )
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        variant = reply.body[0]
        return variant.signature, variant.value

    async def barrier(self) -> None:
        """Return once every signal the Master sent before now has arrived.

        A reply from the Master travels behind the signals it sent before it;
        a Peer.Ping is answered by the Master's connection itself.
        """
        await self.raw(
            Message(
                destination=BUS_NAME,
                path=OBJECT_PATH,
                interface="org.freedesktop.DBus.Peer",
                member="Ping",
            )
        )

    def pending(self) -> list[Message]:
        """The signals already received, taken out of the queue."""
        found = []
        while not self.signals.empty():
            found.append(self.signals.get_nowait())
        return found

    async def next_signal(self) -> Message:
        return await self.signals.get()


@contextlib.asynccontextmanager
async def serving(
    control: FakeControl, address: str, bus_type: str = "session"
) -> AsyncIterator[tuple[MasterInterface, Client]]:
    """The Master API exported over ``control``, and a client on the same bus."""
    bus, interface = await export_master(control, bus_type, address)
    client = await Client.connect(address)
    try:
        yield interface, client
    finally:
        client.bus.disconnect()
        bus.disconnect()
