"""Patch 3 of the node's someipyd (docs/someip.md §10): a local client killed while the
daemon had data queued for it is still disconnected, so its offers do not outlive it.

Found with a Sub killed mid-flash of a UDS ECU behind it: the restarted Sub's
offer was shadowed by the dead process's, and GetInfo went unanswered."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from redstone_agent.someip.someipyd import _server_class

GUARD_S = 20.0
"""Failure guard only: the disconnection follows the kill at once."""


def test_a_killed_client_with_unread_data_is_disconnected(tmp_path: Path) -> None:
    path = tmp_path / "someipyd.sock"

    async def scenario() -> None:
        server = _server_class()(logging.getLogger("test.someipyd"))
        connected, gone = asyncio.Event(), asyncio.Event()

        async def on_connect(_sender: object, args: Any) -> None:
            await args.client.send(b"\0" * 4096)  # events the client will never read
            connected.set()

        def on_disconnect(_sender: object, _args: Any) -> None:
            gone.set()

        server.client_connected += on_connect
        server.client_disconnected += on_disconnect
        await server.start(socket_path=str(path))
        serving = asyncio.create_task(server.serve_forever())
        client = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import socket, time\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                f"s.connect({str(path)!r})\n"
                "time.sleep(60)\n",
            ]
        )
        try:
            await asyncio.wait_for(connected.wait(), GUARD_S)
            client.kill()  # a power cut: the queued bytes stay unread
            await asyncio.to_thread(client.wait)
            await asyncio.wait_for(gone.wait(), GUARD_S)
        finally:
            if client.poll() is None:
                client.kill()
            serving.cancel()

    asyncio.run(scenario())
