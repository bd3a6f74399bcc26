"""The shipped D-Bus policy on a real system-type bus: root and group redstone in, others out."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from redstone_agent.sub.dbus_api import BUS_NAME, INTERFACE, OBJECT_PATH, export
from tests.integration.dbus.support import system_bus
from tests.support import require_tool
from tests.unit.sub.node_bench import make_bench

pytestmark = pytest.mark.root

POLICY = Path(__file__).resolve().parents[3] / "systemd" / "org.redstone.Sub.conf"


def call_status_as(address: str, user: tuple[str, str] | None = None) -> str:
    """Call Status() with dbus-send (a separate process), optionally as another user."""
    wrapper = []
    if user is not None:
        wrapper = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups"]
    result = subprocess.run(
        [
            *wrapper,
            "dbus-send",
            f"--bus={address}",
            "--print-reply=literal",
            f"--dest={BUS_NAME}",
            OBJECT_PATH,
            f"{INTERFACE}.Status",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return (result.stdout + result.stderr).strip()


def test_policy_lets_root_in_and_keeps_others_out(tmp_path: Path) -> None:
    require_tool("setpriv")
    require_tool("dbus-send")
    with system_bus(tmp_path, POLICY) as daemon:
        address = daemon.address
        bench = make_bench(tmp_path / "node")

        async def scenario() -> tuple[str, str]:
            engine = bench.engine()
            await engine.recover()
            bus, _iface = await export(engine, "system", address)
            try:
                as_root = await asyncio.to_thread(call_status_as, address)
                as_nobody = await asyncio.to_thread(call_status_as, address, ("nobody", "nogroup"))
                return as_root, as_nobody
            finally:
                bus.disconnect()

        as_root, as_nobody = asyncio.run(scenario())
    assert json.loads(as_root)["state"] == "IDLE"
    assert "org.freedesktop.DBus.Error.AccessDenied" in as_nobody
