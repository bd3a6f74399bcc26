"""org.redstone.Master1 on a real (session-type) dbus-daemon, over a control that records calls.

What an HMI relies on: every property with its signature, PropertiesChanged
only for what changed, StateChanged / ProgressChanged / LogLine, every method
reaching the control, and every failure a named D-Bus error of one line —
while the service keeps running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from redstone_agent.errors import RedstoneError
from redstone_agent.master.control import ControlError
from redstone_agent.master.dbus_api import (
    BUS_NAME,
    INTERFACE,
    MAX_LOG_LINES,
    OBJECT_PATH,
    export,
)
from redstone_agent.master.record import CampaignRecord
from redstone_agent.master.states import CampaignState
from tests.integration.dbus.support import (
    PROPERTIES,
    Client,
    FakeControl,
    campaign_record,
    serving,
    session_bus,
)

Command = tuple[str, str, list[Any], str, Any]
COMMANDS: list[Command] = [
    # D-Bus member, signature, body, control method, the argument it got
    ("CheckNow", "", [], "check_now", None),
    ("Accept", "", [], "accept", None),
    ("Decline", "", [], "decline", None),
    ("Postpone", "u", [900], "postpone", 900.0),
    ("Cancel", "", [], "cancel", None),
    ("InstallBundle", "s", ["/var/lib/bundles/spring.rsb"], "install_bundle", None),
    ("Rollback", "", [], "rollback", None),
]
COMMAND_IDS = [c[0] for c in COMMANDS]


@pytest.fixture
def address(tmp_path: Path) -> Iterator[str]:
    with session_bus(tmp_path) as daemon:
        yield daemon.address


def error_of(reply: Message) -> tuple[str, str]:
    assert reply.message_type is MessageType.ERROR, reply.body
    (text,) = reply.body
    return reply.error_name or "", text


def assert_one_line(text: str) -> None:
    assert text and "\n" not in text and "Traceback" not in text, text


async def alive(client: Client) -> None:
    """The service still answers (after something that could have broken it)."""
    reply = await client.call("Status")
    assert reply.message_type is MessageType.METHOD_RETURN, reply.body
    assert "state" in json.loads(reply.body[0])


def test_every_property_reads_the_record(address: str) -> None:
    control = FakeControl(campaign_record())
    control.record.blocked_by = "speed 12 km/h > 0 km/h"
    control.record.error = "brake-01: flash verify failed"

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            assert await client.get("State") == ("s", "transferring")
            # (150 + 0) of (300 + 100) bytes; adas-01 is the first busy ECU.
            assert await client.get("Progress") == ("(uss)", (37, "adas-01", "transferring"))
            signature, campaign = await client.get("Campaign")
            assert signature == "(sa{s(ss)}ts)"
            assert campaign == (
                "spring-2027",
                {"adas-01": ("adas-1.0.0", "adas-2.0.0"), "brake-01": ("brake-1.0", "brake-1.1")},
                400,
                "https://notes.example/spring-2027",
            )
            assert await client.get("BlockedBy") == ("s", "speed 12 km/h > 0 km/h")
            assert await client.get("LastError") == ("s", "brake-01: flash verify failed")
            assert await client.get("Detail") == ("s", "streaming images")

    asyncio.run(scenario())


def test_introspection_declares_the_interface(address: str) -> None:
    async def scenario() -> None:
        async with serving(FakeControl(), address) as (_iface, client):
            node = await client.bus.introspect(BUS_NAME, OBJECT_PATH)
            (iface,) = [i for i in node.interfaces if i.name == INTERFACE]
            properties = {p.name: (p.signature, p.access.value) for p in iface.properties}
            assert properties == {
                "State": ("s", "read"),
                "Progress": ("(uss)", "read"),
                "Campaign": ("(sa{s(ss)}ts)", "read"),
                "BlockedBy": ("s", "read"),
                "LastError": ("s", "read"),
                "Detail": ("s", "read"),
            }
            methods = {m.name: (m.in_signature, m.out_signature) for m in iface.methods}
            assert methods == {
                "CheckNow": ("", ""),
                "Accept": ("", ""),
                "Decline": ("", ""),
                "Postpone": ("u", ""),
                "Cancel": ("", ""),
                "InstallBundle": ("s", "s"),
                "Rollback": ("", ""),
                "Status": ("", "s"),
                "Logs": ("u", "as"),
            }
            signals = {s.name: s.signature for s in iface.signals}
            assert signals == {"StateChanged": "ss", "ProgressChanged": "uss", "LogLine": "s"}

    asyncio.run(scenario())


def test_a_transition_announces_exactly_what_changed(address: str) -> None:
    control = FakeControl(CampaignRecord(campaign="spring-2027"))

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            await client.subscribe()
            control.change(state=CampaignState.SYNCING, detail="fetching metadata")
            changed, state, step = [await client.next_signal() for _ in range(3)]

            assert (changed.interface, changed.member) == (PROPERTIES, "PropertiesChanged")
            interface, values, invalidated = changed.body
            assert interface == INTERFACE and invalidated == []
            assert {k: v.value for k, v in values.items()} == {
                "State": "syncing",
                "Detail": "fetching metadata",
                "Progress": (0, "", "syncing"),
            }
            assert values["Progress"].signature == "(uss)"
            assert (state.member, state.body) == ("StateChanged", ["syncing", "fetching metadata"])
            assert (step.member, step.body) == ("ProgressChanged", [0, "", "syncing"])

            # The same record again: nothing to announce.
            control.notify()
            await client.barrier()
            assert client.pending() == []

            # Only the blocker changes: one property, no state, no progress.
            control.change(blocked_by="driver consent")
            changed = await client.next_signal()
            await client.barrier()
            assert client.pending() == []
            assert {k: v.value for k, v in changed.body[1].items()} == {
                "BlockedBy": "driver consent"
            }

            # A Get after the signal sees the value the signal announced.
            assert await client.get("BlockedBy") == ("s", "driver consent")

    asyncio.run(scenario())


def test_progress_steps_signal_without_a_state_change(address: str) -> None:
    control = FakeControl(campaign_record())

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            await client.subscribe()
            control.record.ecus["adas-01"].bytes_done = 300
            control.notify()
            await client.barrier()
            signals = client.pending()
            assert [s.member for s in signals] == ["PropertiesChanged", "ProgressChanged"]
            assert list(signals[0].body[1]) == ["Progress"]
            assert signals[1].body == [75, "adas-01", "transferring"]

            # More bytes downloaded change the Campaign's size, nothing else.
            control.record.ecus["brake-01"].bytes_downloaded = 200
            control.notify()
            await client.barrier()
            (changed,) = client.pending()
            assert changed.body[1]["Campaign"].value[2] == 500

    asyncio.run(scenario())


def test_reentering_a_state_is_a_state_change(address: str) -> None:
    """awaiting -> awaiting with a new blocker is a journaled transition (seq + 1)."""
    record = CampaignRecord(state=CampaignState.AWAITING, seq=3, campaign="c")
    control = FakeControl(record)

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            await client.subscribe()
            control.change(state=CampaignState.AWAITING, detail="ignition on")
            await client.barrier()
            members = [(s.member, s.body) for s in client.pending()]
            assert ("StateChanged", ["awaiting", "ignition on"]) in members

    asyncio.run(scenario())


def test_log_lines_are_signals(address: str) -> None:
    control = FakeControl()

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            await client.subscribe()
            control.log("campaign spring-2027: syncing")
            signal = await client.next_signal()
            assert (signal.member, signal.body) == ("LogLine", ["campaign spring-2027: syncing"])

    asyncio.run(scenario())


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_each_method_reaches_the_control(address: str, command: Command) -> None:
    member, signature, body, name, argument = command
    control = FakeControl()

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            reply = await client.call(member, signature, body)
            assert reply.message_type is MessageType.METHOD_RETURN, reply.body
            if member == "InstallBundle":
                assert reply.body == ["bundle-campaign"]
                assert control.commands() == [(name, Path(body[0]))]
            else:
                assert reply.body == []
                assert control.commands() == [(name, argument)]

    asyncio.run(scenario())


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_a_refused_command_is_a_named_error_of_one_line(address: str, command: Command) -> None:
    member, signature, body, name, _ = command
    control = FakeControl()
    control.refuse[name] = ControlError(
        "PastCommitPoint", "the commit point is passed:\nforward only"
    )

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            error = error_of(await client.call(member, signature, body))
            assert error == (
                f"{INTERFACE}.Error.PastCommitPoint",
                "the commit point is passed: forward only",
            )
            await alive(client)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError('Traceback (most recent call last):\n  File "x.py", line 1\nboom'),
        RedstoneError("state disk full"),
        KeyError("adas-01"),
        ControlError("not a name!", "a code D-Bus cannot carry"),
    ],
    ids=["runtime", "redstone", "keyerror", "bad-code"],
)
def test_anything_else_is_internal_and_one_line(address: str, failure: Exception) -> None:
    control = FakeControl()
    control.refuse["accept"] = failure

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            name, text = error_of(await client.call("Accept"))
            assert name == f"{INTERFACE}.Error.Internal"
            assert text.startswith("internal error in the Master: ")
            assert "\n" not in text
            await alive(client)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("member", "signature", "body"),
    [
        ("Postpone", "s", ["15m"]),
        ("Postpone", "i", [-5]),
        ("InstallBundle", "u", [7]),
        ("Logs", "s", ["ten"]),
        ("Accept", "s", ["yes"]),
        ("Postpone", "", []),
    ],
    ids=[
        "postpone-str",
        "postpone-int32",
        "install-uint",
        "logs-str",
        "accept-arg",
        "postpone-none",
    ],
)
def test_wrong_argument_types_are_refused_by_the_bus_layer(
    address: str, member: str, signature: str, body: list[Any]
) -> None:
    control = FakeControl()

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            name, text = error_of(await client.call(member, signature, body))
            assert name.startswith("org.freedesktop.DBus.Error."), name
            assert_one_line(text)
            assert member in text
            assert control.commands() == []
            await alive(client)

    asyncio.run(scenario())


def test_a_relative_bundle_path_is_refused(address: str) -> None:
    """The daemon's working directory is not the caller's."""
    control = FakeControl()

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            for path in ("spring.rsb", ""):
                name, text = error_of(await client.call("InstallBundle", "s", [path]))
                assert name == f"{INTERFACE}.Error.BadArgument"
                assert "absolute" in text
            assert control.commands() == []

    asyncio.run(scenario())


def test_status_is_the_record_with_progress(address: str) -> None:
    control = FakeControl(campaign_record())

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            reply = await client.call("Status")
            status = json.loads(reply.body[0])
            expected = control.record.to_dict()
            expected["progress"] = {"percent": 37, "ecu": "adas-01", "phase": "transferring"}
            assert status == expected

    asyncio.run(scenario())


def test_logs_returns_the_last_lines(address: str) -> None:
    control = FakeControl()
    control.logs = [f"line {i}" for i in range(20)]

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            assert (await client.call("Logs", "u", [5])).body == [
                [f"line {i}" for i in range(15, 20)]
            ]
            assert (await client.call("Logs", "u", [0])).body == [[]]
            assert (await client.call("Logs", "u", [2**32 - 1])).body == [control.logs]
            assert ("recent_logs", MAX_LOG_LINES) in control.calls

    asyncio.run(scenario())


def test_strings_dbus_cannot_carry_do_not_cost_the_connection(address: str) -> None:
    """A NUL from an ECU's text or a lone surrogate from a file name would make
    the bus daemon drop the Master's connection; they are replaced instead."""
    control = FakeControl(CampaignRecord(campaign="c"))

    async def scenario() -> None:
        async with serving(control, address) as (_iface, client):
            await client.subscribe()
            control.change(state=CampaignState.SYNCING, detail="ecu said \x00\udcff")
            control.log("raw \x00 bytes")
            await client.barrier()
            members = {s.member: s.body for s in client.pending()}
            assert members["StateChanged"] == ["syncing", "ecu said \ufffd?"]
            assert members["LogLine"] == ["raw \ufffd bytes"]
            await alive(client)

    asyncio.run(scenario())


def test_a_second_master_is_refused(address: str) -> None:
    async def scenario() -> None:
        async with serving(FakeControl(), address) as (_iface, client):
            with pytest.raises(RedstoneError, match="already owned"):
                await export(FakeControl(), "session", address)
            await alive(client)

    asyncio.run(scenario())


def test_an_hmi_binds_with_a_generated_proxy(address: str) -> None:
    """What an HMI written against the introspection data does: a proxy, a
    PropertiesChanged handler, method calls by name."""
    control = FakeControl(CampaignRecord(campaign="spring-2027"))

    async def scenario() -> None:
        async with serving(control, address) as (_iface, _client):
            hmi = await MessageBus(bus_address=address).connect()
            try:
                node = await hmi.introspect(BUS_NAME, OBJECT_PATH)
                proxy = hmi.get_proxy_object(BUS_NAME, OBJECT_PATH, node)
                master = proxy.get_interface(INTERFACE)
                properties = proxy.get_interface(PROPERTIES)
                seen: asyncio.Queue[dict[str, Variant]] = asyncio.Queue()
                properties.on_properties_changed(  # type: ignore[attr-defined]
                    lambda _iface, changed, _invalid: seen.put_nowait(changed)
                )
                states: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
                master.on_state_changed(  # type: ignore[attr-defined]
                    lambda state, detail: states.put_nowait((state, detail))
                )
                # The match rules go out without a reply; a round trip on the
                # same connection makes sure the bus daemon applied them.
                assert await master.get_state() == "idle"  # type: ignore[attr-defined]
                control.change(state=CampaignState.SYNCING)
                assert (await seen.get())["State"].value == "syncing"
                assert await states.get() == ("syncing", "")
                assert await master.get_state() == "syncing"  # type: ignore[attr-defined]
                await master.call_postpone(3600)  # type: ignore[attr-defined]
                assert control.commands() == [("postpone", 3600.0)]
            finally:
                hmi.disconnect()

    asyncio.run(scenario())


def test_changes_after_the_bus_went_away_do_not_reach_the_master(address: str) -> None:
    """The control keeps calling its listeners after a disconnect: they must not raise."""
    control = FakeControl()

    async def scenario() -> None:
        async with serving(control, address) as (interface, _client):
            pass
        control.change(state=CampaignState.SYNCING, detail="after the bus")
        control.log("a line nobody hears")
        assert interface.state_property == "syncing"

    asyncio.run(scenario())
