"""The real ``serve`` process: slow-loris connections are dropped, and SIGTERM with an
idle keep-alive TLS connection open stops the server without waiting out
``--graceful-timeout`` (the idle connection used to wait for the client's close_notify)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.integration.cloud.server import prepare_tls_server, serving

pytestmark = pytest.mark.slow


def _tune(config: Path, **values: float) -> None:
    lines = config.read_text().splitlines()
    extra = [f"{key} = {value}" for key, value in values.items()]
    config.write_text("\n".join([lines[0], *extra, *lines[1:]]) + "\n")


def _tls(ca_file: Path, port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_slow_loris_connection_is_closed(database_url: str, tmp_path: Path) -> None:
    files = prepare_tls_server(tmp_path, database_url)
    _tune(files.config, header_timeout_s=1, idle_timeout_s=300)
    with serving(files.config, files.ca_file) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with _tls(files.ca_file, port) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            try:
                closed = conn.recv(1024) == b""
            except ConnectionResetError:
                closed = True
            assert closed, "the server kept a connection whose headers never completed"
        with _tls(files.ca_file, port) as conn:  # a prompt client is served as before
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert conn.recv(1024).startswith(b"HTTP/1.1 200")


def test_sigterm_with_an_idle_keepalive_connection_stops_at_once(
    database_url: str, tmp_path: Path
) -> None:
    files = prepare_tls_server(tmp_path, database_url)
    with serving(files.config, files.ca_file, "--graceful-timeout", "600") as server:
        port = int(server.url.rsplit(":", 1)[1])
        conn = _tls(files.ca_file, port)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(1024).startswith(b"HTTP/1.1 200")  # now idle, kept alive
        os.kill(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + 120  # far below the 600 s graceful timeout
        while os.waitpid(server.pid, os.WNOHANG) == (0, 0):
            assert time.monotonic() < deadline, "serve waited for the idle connection"
            time.sleep(0.1)
        conn.close()
