"""systemd/org.redstone.Master.conf on a real system-type bus: everyone reads, only
root and group ``redstone`` command, only root owns the name.

The Master is exported as root in this process; callers are separate
``dbus-send`` / ``gdbus`` processes, dropped to ``nobody`` with setpriv (and
given the supplementary group ``redstone`` for the group case: dbus-daemon
1.14 reads a caller's groups from the socket, SO_PEERGROUPS, so nobody need
be added to /etc/group). ``groupadd -f redstone`` creates the group once and
leaves it: it is the group the product's policy names, and deleting it
while another run uses it would break that run.
"""

from __future__ import annotations

import asyncio
import grp
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from redstone_agent.master.dbus_api import BUS_NAME, INTERFACE, OBJECT_PATH
from tests.integration.dbus.support import (
    PROPERTIES,
    FakeControl,
    campaign_record,
    serving,
    system_bus,
)
from tests.support import require_tool

pytestmark = pytest.mark.root

GROUP = "redstone"
ROOT: list[str] = []
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
REDSTONE_MEMBER = ["setpriv", "--reuid=nobody", "--regid=nogroup", f"--groups={GROUP}"]

READS = {
    "State": (f"{PROPERTIES}.Get", f"string:{INTERFACE}", "string:State"),
    "GetAll": (f"{PROPERTIES}.GetAll", f"string:{INTERFACE}"),
    "Status": (f"{INTERFACE}.Status",),
    "Logs": (f"{INTERFACE}.Logs", "uint32:5"),
    "Introspect": ("org.freedesktop.DBus.Introspectable.Introspect",),
}
COMMANDS = {
    "CheckNow": ((f"{INTERFACE}.CheckNow",), ("check_now", None)),
    "Accept": ((f"{INTERFACE}.Accept",), ("accept", None)),
    "Decline": ((f"{INTERFACE}.Decline",), ("decline", None)),
    "Postpone": ((f"{INTERFACE}.Postpone", "uint32:900"), ("postpone", 900.0)),
    "Cancel": ((f"{INTERFACE}.Cancel",), ("cancel", None)),
    "InstallBundle": (
        (f"{INTERFACE}.InstallBundle", "string:/data/spring.rsb"),
        ("install_bundle", Path("/data/spring.rsb")),
    ),
    "Rollback": ((f"{INTERFACE}.Rollback",), ("rollback", None)),
}
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"


@pytest.fixture(scope="module")
def group() -> str:
    """The group the policy names; it must exist before the bus reads the policy."""
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        groupadd = shutil.which("groupadd")
        if groupadd is None:
            pytest.skip("groupadd not installed: cannot create group 'redstone'")
        subprocess.run([groupadd, "-f", GROUP], check=True)
    return GROUP


@pytest.fixture
def address(tmp_path: Path, group: str) -> Iterator[str]:
    require_tool("setpriv")
    require_tool("dbus-send")
    with system_bus(tmp_path) as daemon:
        yield daemon.address


async def dbus_send(address: str, caller: list[str], member: str, *args: str) -> str:
    """Call the Master from a separate process as ``caller``; its output (or error)."""
    proc = await asyncio.create_subprocess_exec(
        *caller,
        "dbus-send",
        f"--bus={address}",
        "--print-reply",
        f"--dest={BUS_NAME}",
        OBJECT_PATH,
        member,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    return output.decode()


def test_everyone_may_read(address: str) -> None:
    control = FakeControl(campaign_record())
    control.logs = ["campaign spring-2027: transferring"]

    async def scenario() -> dict[str, str]:
        async with serving(control, address, "system"):
            return {name: await dbus_send(address, NOBODY, *call) for name, call in READS.items()}

    answers = asyncio.run(scenario())
    for name, answer in answers.items():
        assert answer.startswith("method return"), (name, answer)
    assert 'string "transferring"' in answers["State"]
    assert '"campaign": "spring-2027"' in answers["Status"]
    assert "campaign spring-2027: transferring" in answers["Logs"]
    assert f'<interface name="{INTERFACE}">' in answers["Introspect"]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_nobody_may_not_command(address: str, command: str) -> None:
    control = FakeControl()
    call, _ = COMMANDS[command]

    async def scenario() -> str:
        async with serving(control, address, "system"):
            return await dbus_send(address, NOBODY, *call)

    answer = asyncio.run(scenario())
    assert ACCESS_DENIED in answer, answer
    assert control.commands() == []


def test_nobody_may_not_set_a_property_or_own_the_name(address: str) -> None:
    control = FakeControl()

    async def scenario() -> tuple[str, str]:
        async with serving(control, address, "system"):
            set_state = await dbus_send(
                address,
                NOBODY,
                f"{PROPERTIES}.Set",
                f"string:{INTERFACE}",
                "string:State",
                "variant:string:done",
            )
            proc = await asyncio.create_subprocess_exec(
                *NOBODY,
                "dbus-send",
                f"--bus={address}",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.RequestName",
                f"string:{BUS_NAME}",
                "uint32:4",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            own, _ = await proc.communicate()
            return set_state, own.decode()

    set_state, own = asyncio.run(scenario())
    assert ACCESS_DENIED in set_state, set_state
    assert ACCESS_DENIED in own, own


@pytest.mark.parametrize(
    "caller", [ROOT, REDSTONE_MEMBER], ids=["root", f"nobody-in-group-{GROUP}"]
)
def test_root_and_the_redstone_group_may_command(address: str, caller: list[str]) -> None:
    control = FakeControl()

    async def scenario() -> dict[str, str]:
        async with serving(control, address, "system"):
            return {
                name: await dbus_send(address, caller, *call)
                for name, (call, _) in COMMANDS.items()
            }

    answers = asyncio.run(scenario())
    for name, answer in answers.items():
        assert answer.startswith("method return"), (name, answer)
    assert control.commands() == [expected for _, expected in COMMANDS.values()]


def test_nobody_receives_the_signals(address: str) -> None:
    """An HMI without privileges follows StateChanged and LogLine."""
    gdbus = require_tool("gdbus")
    control = FakeControl()

    async def scenario() -> list[str]:
        async with serving(control, address, "system"):
            monitor = await asyncio.create_subprocess_exec(
                *NOBODY,
                gdbus,
                "monitor",
                "--address",
                address,
                "--dest",
                BUS_NAME,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            assert monitor.stdout is not None
            seen: list[str] = []
            try:
                # gdbus prints nothing that says its match rule is in place, so
                # send a line until one arrives; nothing here asserts on time.
                while not any("LogLine" in line for line in seen):
                    control.log(f"hello nobody {len(seen)}")
                    try:
                        raw = await asyncio.wait_for(monitor.stdout.readline(), 0.2)
                    except TimeoutError:
                        continue
                    assert raw, f"gdbus monitor ended: {seen}"
                    seen.append(raw.decode())
            finally:
                monitor.terminate()
                await monitor.wait()
            return seen

    seen = asyncio.run(scenario())
    assert any(f"{INTERFACE}.LogLine ('hello nobody" in line for line in seen), seen
