"""A Sub on a full state disk, seen through its D-Bus API: named errors, one line, status works."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from dbus_fast import DBusError
from dbus_fast.aio import MessageBus

from redstone_agent.journal import StateWriteError
from redstone_agent.slots import InstallRefused
from redstone_agent.someip.interface import ResultCode
from redstone_agent.sub.dbus_api import BUS_NAME, INTERFACE, OBJECT_PATH, dbus_error, export
from redstone_agent.sub.errors import SubError, WrongState
from tests.integration.netns import stop_process
from tests.integration.slots.test_full_disk import fill, full_tmpfs
from tests.support import require_tool
from tests.unit.sub.node_bench import make_bench


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (WrongState("Commit not allowed in IDLE"), "WRONG_STATE"),
        (SubError("x", ResultCode.INSTALL_FAILED), "INSTALL_FAILED"),
        (StateWriteError(Path("/s/sub.json"), OSError(28, "No space left on device")), "INTERNAL"),
        (InstallRefused("an install is running on this node"), "INTERNAL"),
        (IsADirectoryError(21, "Is a directory"), "INTERNAL"),
        (ValueError("two\nlines \udc80"), "INTERNAL"),
        (RuntimeError(), "INTERNAL"),
    ],
)
def test_every_error_has_a_d_bus_name_and_one_line(error: Exception, name: str) -> None:
    mapped = dbus_error(error)
    assert mapped.type == f"{INTERFACE}.Error.{name}"
    assert mapped.text and "\n" not in mapped.text
    mapped.text.encode("utf-8")


@pytest.mark.root
def test_install_on_a_full_state_disk_is_a_named_one_line_error(tmp_path: Path) -> None:
    require_tool("dbus-daemon")
    bench = make_bench(tmp_path)
    request = bench.publish("v1.img", b"image" * 1000, 1)
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()

        async def call(iface: object, method: str, *args: object) -> str:
            try:
                await getattr(iface, f"call_{method}")(*args)
            except DBusError as exc:
                assert exc.text and "\n" not in exc.text
                return f"{exc.type}: {exc.text}"
            return "ok"

        async def scenario() -> None:
            engine = bench.engine()
            await engine.recover()
            service, _ = await export(engine, "session", address)
            client = await MessageBus(bus_address=address).connect()
            try:
                node = await client.introspect(BUS_NAME, OBJECT_PATH)
                sub = client.get_proxy_object(BUS_NAME, OBJECT_PATH, node).get_interface(INTERFACE)
                assert (await call(sub, "mark_good")).startswith(f"{INTERFACE}.Error.WRONG_STATE")
                bad = await call(sub, "install", "v1.img", request.url, "zz", request.length)
                assert bad.startswith(f"{INTERFACE}.Error.MALFORMED")
                assert await call(sub, "put_metadata", bench.sim.bundle().to_bytes()) == "ok"
                fill(bench.root / "state")
                full = await call(
                    sub, "install", "v1.img", request.url, request.sha256.hex(), request.length
                )
                assert full.startswith(f"{INTERFACE}.Error.INSTALL_FAILED: install not started")
                assert "No space left on device" in full
                kept = await call(sub, "put_metadata", bench.sim.bundle().to_bytes())
                assert kept.startswith(f"{INTERFACE}.Error.INTERNAL: verified metadata not kept")
                assert '"state": "IDLE"' in await sub.call_status()  # type: ignore[attr-defined]
            finally:
                client.disconnect()
                service.disconnect()

        with full_tmpfs(bench.root / "state"):
            asyncio.run(scenario())
    finally:
        stop_process(daemon)
