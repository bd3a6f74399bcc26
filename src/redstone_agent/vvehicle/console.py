"""The cloud's web console for whoever runs the virtual vehicle: a user to sign in with,
and a URL a browser on this machine reaches.

On loopback addresses the browser reaches the cloud directly. In network namespaces it
cannot, so a relay in this process listens on 127.0.0.1 and forwards to the cloud's
Unix-socket relay (:mod:`.relay`); TLS runs end to end, and the server certificate
names 127.0.0.1 too.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from redstone_agent.vvehicle import relay
from redstone_agent.vvehicle.cloud import Cloud

USER = "operator"


@dataclass(frozen=True)
class Console:
    url: str
    user: str
    password: str
    ca: Path
    """The CA a browser must trust to show the page without a warning."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _relay_in_background(listen: relay.Endpoint, target: relay.Endpoint) -> None:
    """Serve for as long as this process runs (a daemon thread: no clean-up owed)."""
    ready = threading.Event()

    async def run() -> None:
        stop = asyncio.Event()  # never set: the thread ends with the process
        task = asyncio.create_task(relay.serve(listen, target, stop))
        await asyncio.sleep(0)
        ready.set()
        await task

    threading.Thread(target=asyncio.run, args=(run(),), name="console-relay", daemon=True).start()
    ready.wait(5)


def open_console(cloud: Cloud) -> Console:
    """Make the console user (an admin, with a fresh password kept in a 0600 file) and
    the URL to reach the console at."""
    password = secrets.token_urlsafe(12)
    secret = cloud.workdir / "console-password"
    secret.touch(mode=0o600)
    secret.write_text(password + "\n")
    cloud.cli("user", "add", USER, "--role", "admin", "--password-file", str(secret))
    if cloud.node.netns is None:
        base = cloud.url
    else:
        port = _free_port()
        _relay_in_background(
            relay.Endpoint(host="127.0.0.1", port=port), relay.Endpoint(path=cloud.relay_socket)
        )
        base = f"https://127.0.0.1:{port}"
    return Console(f"{base}/console/", USER, password, cloud.ca)
