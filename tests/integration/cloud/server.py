"""Run ``redstone-cloud serve`` as a real process on a socket we bound (no fixed port)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from redstone_cloud import pki as certs
from redstone_cloud.backend import open_backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.services import pki
from redstone_cloud.settings import Settings, load_settings


def write_config(
    path: Path, database_url: str, data_dir: Path, admin_sha256: str = "", **tls: Path
) -> Path:
    lines = ["[cloud]", f'database_url = "{database_url}"', f'data_dir = "{data_dir}"']
    if admin_sha256:
        lines += ["[[cloud.admins]]", 'name = "alice"', f'token_sha256 = "{admin_sha256}"']
    if tls:
        lines.append("[cloud.tls]")
        lines += [f'{key} = "{value}"' for key, value in tls.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class ServerFiles:
    config: Path
    settings: Settings
    ca_file: Path
    """The root CA certificate clients verify the server with."""


def prepare_tls_server(tmp_path: Path, database_url: str, admin_sha256: str = "") -> ServerFiles:
    """Config, root CA and server certificate for ``serving`` (database already migrated)."""
    config = write_config(
        tmp_path / "cloud.toml",
        database_url,
        tmp_path / "data",
        admin_sha256,
        cert=tmp_path / "server.pem",
        key=tmp_path / "server.key",
    )
    settings = load_settings(config)
    backend = open_backend(settings)
    with transaction(backend.sessions) as session:
        root = pki.create_ca(session, settings.key_dir, "test", "root")
        cert, key = pki.server_certificate(session, settings.key_dir, ["127.0.0.1"])
    backend.close()
    (tmp_path / "server.pem").write_text(certs.cert_pem(cert))
    (tmp_path / "server.key").write_bytes(certs.key_to_pem(key))
    (tmp_path / "ca.pem").write_text(root.cert_pem)
    return ServerFiles(config, settings, tmp_path / "ca.pem")


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int


@contextmanager
def serving(config: Path, ca_file: Path, *extra: str) -> Iterator[RunningServer]:
    """Yield a running server (URL, pid); stop it afterwards."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    port = listener.getsockname()[1]
    argv = [sys.executable, "-m", "redstone_cloud", "--config", str(config), "serve"]
    argv += ["--fd", str(listener.fileno()), "--log-level", "warning", "--graceful-timeout", "1"]
    argv += extra
    proc = subprocess.Popen(argv, pass_fds=[listener.fileno()], stderr=subprocess.PIPE)
    listener.close()
    url = f"https://127.0.0.1:{port}"
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/healthz", verify=context, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not come up within 30 s")
            time.sleep(0.1)
        yield RunningServer(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
