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
