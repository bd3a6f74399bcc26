"""``redstonectl`` as an operator meets it, end to end: a separate process on a
private bus, talking to org.redstone.Master1 over a control that records calls.

Exit codes: 0 done, 1 refused, 2 usage, 3 not reachable; every error one line.
Follow modes (``status --watch``, ``logs -f``) are read line by line and
ended with SIGINT; nothing here waits on a clock.

No ``from __future__ import annotations`` here: dbus-fast reads FakeSub's
``-> None`` as the object, not the string "None".
"""

import asyncio
import json
import os
import pty
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self, cast

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusStr
from dbus_fast.service import ServiceInterface, method
from rich.console import Console

from redstone_agent.cli import redstonectl
from redstone_agent.master.control import ControlError
from redstone_agent.master.dbus_api import export
from redstone_agent.master.states import CampaignState
from tests.integration.dbus.support import (
    BusDaemon,
    FakeControl,
    campaign_record,
    finish_campaign,
    refusal,
    serving,
    session_bus,
)

PROG = [sys.executable, "-m", "redstone_agent.cli.redstonectl"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def address(tmp_path: Path) -> Iterator[str]:
    with session_bus(tmp_path) as daemon:
        yield daemon.address


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != redstonectl.ENV_ADDRESS}
    env.update(extra)
    return env


async def ctl(address: str, *args: str, cwd: Path | None = None, **env: str) -> Result:
    """Run redstonectl to its end, with ``--bus address`` unless ``address`` is ""."""
    bus = ["--bus", address] if address else []
    proc = await asyncio.create_subprocess_exec(
        *PROG,
        *bus,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(**env),
        cwd=cwd,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def run_ctl(address: str, *args: str) -> Result:
    return asyncio.run(ctl(address, *args))


def one_error_line(result: Result) -> str:
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("redstonectl: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


class Following:
    """A redstonectl that keeps running; read its lines, then interrupt it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, address: str, *args: str) -> Self:
        proc = await asyncio.create_subprocess_exec(
            *PROG,
            "--bus",
            address,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment(),
        )
        return cls(proc)

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            assert self.proc.stderr is not None
            err = await self.proc.stderr.read()
            raise AssertionError(f"redstonectl ended: {err.decode()}")
        return raw.decode().rstrip("\n")

    async def lines(self, count: int) -> list[str]:
        return [await self.line() for _ in range(count)]

    async def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return await self.proc.wait()


# -- usage -----------------------------------------------------------------------------


def test_help_teaches_with_examples() -> None:
    result = run_ctl("", "--help")
    assert result.code == 0
    for word in ("status --watch", "postpone 2h", "install", "mark-good", "logs -f", "exit codes"):
        assert word in result.out, word


@pytest.mark.parametrize("duration", ["15", "15x", "m", "-5m", "1.5h", "99999999d"])
def test_a_bad_duration_is_a_usage_error(duration: str) -> None:
    result = run_ctl("unix:path=/nonexistent", "postpone", duration)
    assert result.code == 2
    assert "DURATION" in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--service", "sub", "accept"), "Master command"),
        (("--service", "master", "mark-good"), "Sub command"),
        (("--bus", "bogus", "status"), "--bus"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_other_usage_errors_are_one_line(args: tuple[str, ...], word: str) -> None:
    result = run_ctl("", *args)
    assert result.code == 2
    assert word in one_error_line(result)


def test_global_options_also_follow_the_command(address: str, tmp_path: Path) -> None:
    control = FakeControl()

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl("", "accept", "--bus", address)

    assert asyncio.run(scenario()).code == 0
    assert control.commands() == [("accept", None)]


# -- reading ---------------------------------------------------------------------------


def test_status_json_is_the_record_with_progress(address: str) -> None:
    control = FakeControl(campaign_record())

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, "status", "--json")

    result = asyncio.run(scenario())
    assert result.code == 0, result.err
    status = json.loads(result.out)
    assert status["campaign"] == "spring-2027" and status["state"] == "transferring"
    assert status["progress"] == {"percent": 37, "ecu": "adas-01", "phase": "transferring"}
    assert status["ecus"]["adas-01"]["bytes_done"] == 150


def test_human_status(address: str) -> None:
    control = FakeControl(campaign_record())
    control.record.blocked_by = "speed 12 km/h > 0 km/h"

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, "status")

    result = asyncio.run(scenario())
    assert result.code == 0, result.err
    for text in (
        "state: transferring (streaming images)",
        "campaign: spring-2027",
        "adas-01",
        "progress: 37% transferring (adas-01)",
        "blocked by: speed 12 km/h > 0 km/h",
    ):
        assert text in result.out, text


def test_logs_n_returns_the_last_lines(address: str) -> None:
    control = FakeControl()
    control.logs = [f"line {i}" for i in range(12)]

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, "logs", "-n", "5")

    result = asyncio.run(scenario())
    assert result.code == 0, result.err
    assert result.out.splitlines() == [f"line {i}" for i in range(7, 12)]


def test_logs_follow_prints_new_lines_once(address: str) -> None:
    control = FakeControl()
    control.logs = ["old 1", "old 2"]

    async def scenario() -> tuple[list[str], int]:
        async with serving(control, address):
            follow = await Following.start(address, "logs", "-f", "-n", "2")
            seen = await follow.lines(2)
            control.log("new 3")
            control.log("new 4")
            seen += await follow.lines(2)
            return seen, await follow.interrupt()

    seen, code = asyncio.run(scenario())
    assert seen == ["old 1", "old 2", "new 3", "new 4"]
    assert code == 0


def test_logs_follow_prints_a_line_logged_during_the_read_once(address: str) -> None:
    """A LogLine sent before Logs() answered is in the answer: printed once, in order."""
    control = FakeControl()
    control.logs = ["old 1"]
    control.log_while_read = "racing 2"

    async def scenario() -> tuple[list[str], int]:
        async with serving(control, address):
            follow = await Following.start(address, "logs", "-f", "-n", "5")
            seen = await follow.lines(2)
            control.log("new 3")
            seen.append(await follow.line())
            return seen, await follow.interrupt()

    seen, code = asyncio.run(scenario())
    assert seen == ["old 1", "racing 2", "new 3"]
    assert code == 0


def test_status_watch_json_prints_one_document_per_change(address: str) -> None:
    control = FakeControl(campaign_record())

    async def scenario() -> tuple[list[str], int]:
        async with serving(control, address):
            watch = await Following.start(address, "status", "--watch", "--json")
            seen = [await watch.line()]
            control.change(state=CampaignState.AWAITING, detail="waiting for consent")
            seen.append(await watch.line())
            control.change(blocked_by="driver consent")
            seen.append(await watch.line())
            return seen, await watch.interrupt()

    seen, code = asyncio.run(scenario())
    documents = [json.loads(line) for line in seen]
    assert [d["state"] for d in documents] == ["transferring", "awaiting", "awaiting"]
    assert [d["blocked_by"] for d in documents] == ["", "", "driver consent"]
    assert code == 0


def test_status_watch_without_a_terminal_prints_a_line_per_change(address: str) -> None:
    control = FakeControl(campaign_record())

    async def scenario() -> tuple[list[str], list[str], int]:
        async with serving(control, address):
            watch = await Following.start(address, "status", "--watch")
            first = await watch.lines(2)
            control.change(state=CampaignState.AWAITING, detail="waiting for consent")
            # PropertiesChanged carries no line of its own here; then state, progress.
            changes = await watch.lines(2)
            control.change(blocked_by="driver consent")
            changes.append(await watch.line())
            control.change(blocked_by="")
            changes.append(await watch.line())
            return first, changes, await watch.interrupt()

    first, changes, code = asyncio.run(scenario())
    assert first == [
        "state: transferring (streaming images)",
        "progress: 37% transferring adas-01",
    ]
    assert changes == [
        "state: awaiting (waiting for consent)",
        "progress: 0% awaiting adas-01",
        "blocked by: driver consent",
        "blocked by: nothing",
    ]
    assert code == 0


def test_status_watch_on_a_terminal_draws_bars(address: str) -> None:
    """The rich view end to end: redstonectl's stdout is a pseudo-terminal."""
    control = FakeControl(campaign_record())
    control.record.blocked_by = "speed 12 km/h > 0 km/h"

    async def read_until(fd: int, text: str, seen: bytearray) -> None:
        while text.encode() not in seen:
            chunk = await asyncio.to_thread(os.read, fd, 65536)
            assert chunk, f"terminal closed: {seen.decode(errors='replace')}"
            seen.extend(chunk)

    async def scenario() -> tuple[str, int]:
        main, child = pty.openpty()
        try:
            async with serving(control, address):
                proc = await asyncio.create_subprocess_exec(
                    *PROG,
                    "--bus",
                    address,
                    "status",
                    "--watch",
                    stdout=child,
                    stderr=asyncio.subprocess.PIPE,
                    env=environment(COLUMNS="120", TERM="xterm"),
                )
                seen = bytearray()
                await read_until(main, "blocked by: speed 12 km/h", seen)
                control.record.ecus["adas-01"].bytes_done = 300
                control.change(state=CampaignState.TRANSFERRING, detail="almost")
                await read_until(main, "almost", seen)
                proc.send_signal(signal.SIGINT)
                code = await proc.wait()
                return seen.decode(errors="replace"), code
        finally:
            os.close(child)
            os.close(main)

    screen, code = asyncio.run(scenario())
    assert code == 0
    assert "\x1b[" in screen  # drawn, not printed
    for text in ("spring-2027", "adas-01", "brake-01", " 50%", "100%", "installing"):
        assert text in screen, text


# -- commands --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "call", "said"),
    [
        (("accept",), ("accept", None), "accepted"),
        (("decline",), ("decline", None), "declined"),
        (("postpone", "15m"), ("postpone", 900.0), "900 s"),
        (("postpone", "90s"), ("postpone", 90.0), "90 s"),
        (("postpone", "2h"), ("postpone", 7200.0), "7200 s"),
        (("postpone", "1d"), ("postpone", 86400.0), "86400 s"),
        (("cancel",), ("cancel", None), "cancelled"),
        (("rollback",), ("rollback", None), "rolling back"),
        (("check-now",), ("check_now", None), "check"),
    ],
)
def test_commands_reach_the_master(
    address: str, args: tuple[str, ...], call: tuple[str, object], said: str
) -> None:
    control = FakeControl()

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, *args)

    result = asyncio.run(scenario())
    assert result.code == 0, result.err
    assert said in result.out
    assert control.commands() == [call]


def test_a_refused_command_exits_1_with_one_line(address: str) -> None:
    control = FakeControl()
    control.refuse["accept"] = refusal("NotWaiting", "no campaign waits for consent")

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, "accept")

    result = asyncio.run(scenario())
    assert result.code == 1
    assert one_error_line(result) == (
        "redstonectl: accept refused (NotWaiting): no campaign waits for consent"
    )


def test_master_not_running_exits_3(address: str) -> None:
    result = run_ctl(address, "status")
    assert result.code == 3
    assert one_error_line(result) == (
        f"redstonectl: the Master is not running: no org.redstone.Master on the bus at {address}"
    )


def test_no_bus_exits_3() -> None:
    result = run_ctl("unix:path=/nonexistent/bus", "accept")
    assert result.code == 3
    assert "cannot connect" in one_error_line(result)


def test_the_bus_address_comes_from_the_environment(address: str) -> None:
    control = FakeControl()

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl("", "check-now", REDSTONE_DBUS_ADDRESS=address)

    result = asyncio.run(scenario())
    assert result.code == 0, result.err
    assert control.commands() == [("check_now", None)]


def test_watch_ends_with_3_when_the_master_leaves(address: str) -> None:
    control = FakeControl()

    async def scenario() -> Result:
        bus_and_client = serving(control, address)
        await bus_and_client.__aenter__()
        try:
            watch = await Following.start(address, "status", "--watch")
            await watch.lines(2)
        finally:
            await bus_and_client.__aexit__(None, None, None)
        code = await watch.proc.wait()
        assert watch.proc.stderr is not None
        return Result(code, "", (await watch.proc.stderr.read()).decode())

    result = asyncio.run(scenario())
    assert result.code == 3
    assert "left" in one_error_line(result)


def test_logs_follow_ends_with_3_when_the_bus_goes_away(tmp_path: Path) -> None:
    control = FakeControl()
    control.logs = ["old 1"]

    async def scenario(daemon: BusDaemon) -> Result:
        bus, _iface = await export(control, "session", daemon.address)
        follow = await Following.start(daemon.address, "logs", "-f")
        await follow.line()
        # SIGKILL: no orderly shutdown that would first tell it the Master left.
        daemon.proc.kill()
        daemon.proc.wait()
        code = await follow.proc.wait()
        bus.disconnect()
        assert follow.proc.stderr is not None
        return Result(code, "", (await follow.proc.stderr.read()).decode())

    with session_bus(tmp_path) as daemon:
        result = asyncio.run(scenario(daemon))
    assert result.code == 3
    assert "lost the bus at" in one_error_line(result)


# -- install ---------------------------------------------------------------------------


def test_install_sends_an_absolute_path_and_follows_to_done(address: str, tmp_path: Path) -> None:
    bundle = tmp_path / "spring.rsb"
    bundle.write_bytes(b"bundle")
    control = FakeControl()
    control.after_install = finish_campaign(control, CampaignState.DONE)

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, "install", "spring.rsb", cwd=tmp_path)

    result = asyncio.run(scenario())
    assert result.code == 0, result.err
    assert control.commands() == [("install_bundle", bundle)]
    lines = result.out.splitlines()
    assert lines[0] == f"installing campaign bundle-campaign from {bundle}"
    assert "state: transferring" in lines
    assert "progress: 50% transferring adas-01" in lines
    assert lines[-1] == "campaign bundle-campaign: done"


def test_install_that_fails_exits_1(address: str, tmp_path: Path) -> None:
    bundle = tmp_path / "spring.rsb"
    bundle.write_bytes(b"bundle")
    control = FakeControl()
    control.after_install = finish_campaign(control, CampaignState.FAILED)

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, "install", str(bundle))

    result = asyncio.run(scenario())
    assert result.code == 1
    assert "state: rolling-back" in result.out
    assert one_error_line(result) == (
        "redstonectl: campaign bundle-campaign failed: adas-01: health check failed"
    )


def test_install_no_wait_returns_once_started(address: str, tmp_path: Path) -> None:
    bundle = tmp_path / "spring.rsb"
    bundle.write_bytes(b"bundle")
    control = FakeControl()

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, "install", str(bundle), "--no-wait")

    result = asyncio.run(scenario())
    assert result.code == 0, result.err
    assert result.out == f"installing campaign bundle-campaign from {bundle}\n"


def test_install_refused_bundle_exits_1(address: str, tmp_path: Path) -> None:
    bundle = tmp_path / "other-car.rsb"
    bundle.write_bytes(b"bundle")
    control = FakeControl()
    control.refuse["install_bundle"] = ControlError("BadBundle", "meant for VIN WVW0000000001")

    async def scenario() -> Result:
        async with serving(control, address):
            return await ctl(address, "install", str(bundle))

    result = asyncio.run(scenario())
    assert result.code == 1
    assert one_error_line(result) == (
        "redstonectl: install refused (BadBundle): meant for VIN WVW0000000001"
    )


def test_install_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run_ctl("unix:path=/nonexistent", "install", str(tmp_path / "nope.rsb"))
    assert result.code == 2
    assert "no such bundle file" in one_error_line(result)


# -- the Sub ---------------------------------------------------------------------------


class FakeSub(ServiceInterface):
    """org.redstone.Sub1's MarkGood / MarkBad / Status, recording calls."""

    def __init__(self) -> None:
        super().__init__("org.redstone.Sub1")
        self.calls: list[str] = []

    @method(name="MarkGood")
    def mark_good(self) -> None:
        self.calls.append("MarkGood")

    @method(name="MarkBad")
    def mark_bad(self) -> None:
        self.calls.append("MarkBad")

    @method(name="Status")
    def status(self) -> DBusStr:
        return json.dumps({"state": "VERIFYING", "target": "rootfs-2.1", "error": "OK"})


@pytest.mark.parametrize(
    ("args", "call"),
    [
        (("mark-good",), "MarkGood"),
        (("mark-bad",), "MarkBad"),
        (("--service", "sub", "status"), ""),
    ],
)
def test_mark_good_and_bad_go_to_the_sub(address: str, args: tuple[str, ...], call: str) -> None:
    sub = FakeSub()

    async def scenario() -> Result:
        bus = await MessageBus(bus_address=address).connect()
        try:
            bus.export("/org/redstone/Sub", sub)
            await bus.request_name("org.redstone.Sub")
            return await ctl(address, *args)
        finally:
            bus.disconnect()

    result = asyncio.run(scenario())
    assert result.code == 0, result.err
    assert sub.calls == ([call] if call else [])
    if not call:
        assert "state: VERIFYING" in result.out and "target: rootfs-2.1" in result.out


def test_mark_good_without_a_sub_exits_3(address: str) -> None:
    result = run_ctl(address, "mark-good")
    assert result.code == 3
    assert "the Sub is not running" in one_error_line(result)


# -- pieces --------------------------------------------------------------------------


def test_access_denied_reads_as_not_allowed() -> None:
    """What the system bus answers nobody (tests/integration/dbus/test_master_dbus_policy.py)."""
    client = redstonectl.Client(
        cast(MessageBus, None), redstonectl.MASTER, redstonectl.choose_bus("system")
    )
    call = Message(destination="org.redstone.Master", path="/", member="Accept", serial=4)
    denied = Message.new_error(
        call,
        "org.freedesktop.DBus.Error.AccessDenied",
        'Rejected send message, 2 matched rules; type="method_call", sender=":1.4"',
    )
    denied.serial = 9
    assert denied.message_type is MessageType.ERROR
    error = client._error("accept", denied)
    assert isinstance(error, redstonectl.Refused)
    assert str(error).startswith("accept: not allowed for this user")


def test_the_terminal_view_shows_every_ecu() -> None:
    status = json.loads(json.dumps(campaign_record().to_dict()))
    status["progress"] = {"percent": 37, "ecu": "adas-01", "phase": "transferring"}
    status["blocked_by"] = "ignition on"
    console = Console(record=True, width=120, force_terminal=True)
    console.print(redstonectl.render(status))
    text = console.export_text()
    assert "spring-2027" in text and "transferring" in text
    assert "adas-01" in text and " 50%" in text and "brake-01" in text and "  0%" in text
    assert "blocked by: ignition on" in text
