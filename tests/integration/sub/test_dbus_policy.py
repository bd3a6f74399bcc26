"""The shipped D-Bus policy on a real system-type bus: root and group redstone in, others out."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from redstone_agent.sub.dbus_api import BUS_NAME, INTERFACE, OBJECT_PATH, export
from tests.integration.netns import stop_process
from tests.support import require_tool
from tests.unit.sub.node_bench import make_bench

pytestmark = pytest.mark.root

POLICY = Path(__file__).resolve().parents[3] / "systemd" / "org.redstone.Sub.conf"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
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
  <include>{policy}</include>
</busconfig>
"""


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
    require_tool("dbus-daemon")
    require_tool("setpriv")
    require_tool("dbus-send")
    # The socket must be reachable by "nobody": pytest's tmp dirs are root-only.
    public = Path(tempfile.mkdtemp(prefix=f"rs-dbus-{os.getpid()}-"))
    public.chmod(0o755)
    socket = public / "system_bus_socket"
    config = tmp_path / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=socket, policy=POLICY))
    daemon = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork"])
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            assert daemon.poll() is None and time.monotonic() < deadline, "dbus-daemon failed"
            time.sleep(0.02)
        address = f"unix:path={socket}"
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
    finally:
        stop_process(daemon)
        shutil.rmtree(public, ignore_errors=True)
