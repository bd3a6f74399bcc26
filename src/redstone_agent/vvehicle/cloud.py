"""The cloud backend on its lab node, set up the way an operator would.

``redstone-cloud`` itself does the file-only steps (database migration,
admin token, CA, server certificate); ``serve`` then runs on the cloud node
with TLS. Everything after that goes through the real HTTPS API
(:mod:`redstone_agent.vvehicle.operator`). In namespaces the API is reached
through a Unix-socket relay on the cloud node (:mod:`.relay`); on loopback
directly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import sys
import time
from pathlib import Path

import httpx

from redstone_agent.vvehicle.errors import CloudError, LabError
from redstone_agent.vvehicle.netlab import Node, executable
from redstone_agent.vvehicle.plan import CLOUD_PORT, cloud_toml

START_TIMEOUT = 60.0


class Cloud:
    """``redstone-cloud serve`` on *node*, its files under *workdir*."""

    def __init__(self, node: Node, workdir: Path) -> None:
        self.node = node
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config = workdir / "cloud.toml"
        self.ca = workdir / "ca.pem"
        """The CA bundle that verifies the server (and issued the vehicle's certificate)."""
        self.relay_socket = workdir / "api.sock"
        self.admin_token = ""

    @property
    def log(self) -> Path:
        """The server's log, with one access line per request (method, path, status)."""
        return self.workdir / "serve.log"

    @property
    def url(self) -> str:
        return f"https://{self.node.ip}:{CLOUD_PORT}"

    def cli(self, *args: str) -> dict[str, object]:
        out = self.node.run(
            [executable("redstone-cloud"), "--config", str(self.config), "--json", *args]
        )
        last = out.strip().splitlines()[-1] if out.strip() else "{}"
        parsed = json.loads(last)
        return parsed if isinstance(parsed, dict) else {}

    def start(self) -> None:
        """Configure, migrate, make the PKI, serve, and wait until ``/healthz`` answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = self.workdir / "server.pem", self.workdir / "server.key"
        # The token's hash goes into the config, so make the token with a bare config first.
        self.config.write_text(f"[cloud]\ndata_dir = {json.dumps(str(self.data_dir))}\n")
        token = self.cli("admin", "token", "redstone-vehicle")
        self.admin_token = str(token["token"])
        admin_sha256 = hashlib.sha256(self.admin_token.encode()).hexdigest()
        self.config.write_text(
            cloud_toml(data_dir=self.data_dir, admin_sha256=admin_sha256, cert=cert, key=key)
        )
        self.cli("db", "upgrade")
        self.cli("pki", "init-ca", "oem-root")
        # 127.0.0.1 as well: a browser on this machine reaches the console there (.console).
        names = dict.fromkeys((self.node.ip, "127.0.0.1"))
        self.cli("pki", "server-cert", *names, "--cert", str(cert), "--key", str(key))
        self.node.spawn(
            [
                executable("redstone-cloud"),
                "--config",
                str(self.config),
                "serve",
                "--host",
                self.node.ip,
                "--port",
                str(CLOUD_PORT),
                "--log-level",
                "info",
                "--access-log",
                "--graceful-timeout",
                "1",
            ],
            log=self.log,
        )
        if self.node.netns is not None:
            self.node.spawn(
                [
                    sys.executable,
                    "-m",
                    "redstone_agent.vvehicle.relay",
                    f"unix:{self.relay_socket}",
                    f"tcp:{self.node.ip}:{CLOUD_PORT}",
                ],
                log=self.workdir / "relay.log",
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        bundle = self.data_dir / "client-ca.pem"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            exited = [p for p in self.node.processes if p.poll() is not None]
            if exited:
                raise LabError(f"redstone-cloud serve exited: see {self.log}")
            if bundle.exists() and (self.node.netns is None or self.relay_socket.exists()):
                shutil.copyfile(bundle, self.ca)
                try:
                    with self.client() as client:
                        if client.get("/healthz").status_code == 200:
                            return
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise CloudError(f"the cloud did not answer within {START_TIMEOUT:g} s")
            time.sleep(0.2)

    def client(self, cert: tuple[Path, Path] | None = None, timeout: float = 30.0) -> httpx.Client:
        """An HTTPS client to the API; with *cert* (certificate, key) it is the vehicle."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            context.load_cert_chain(cert[0], cert[1])
        uds = str(self.relay_socket) if self.node.netns is not None else None
        transport = httpx.HTTPTransport(verify=context, uds=uds)
        return httpx.Client(base_url=self.url, transport=transport, timeout=timeout)
