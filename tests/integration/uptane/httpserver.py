"""A real local HTTP server for the network tests: static files, Range, and injected faults.

Python's ``http.server`` ignores Range, so this small handler serves files
itself; ``faults`` maps a URL path to misbehaviour: ``endless`` (never-ending
body), ``slow`` (one byte per 50 ms), ``cut:N`` (close after N bytes, once),
``status:N`` (answer N, once).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

_RANGE = re.compile(r"bytes=(\d+)-$")


class _Handler(BaseHTTPRequestHandler):
    server: FaultyServer

    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)

    def do_GET(self) -> None:
        fault = self.server.faults.get(self.path, "")
        if fault.startswith("status:"):
            self.server.faults.pop(self.path)
            self.send_error(int(fault.split(":")[1]))
            return
        if fault == "endless":
            self._endless()
            return
        file = self.server.root / unquote(self.path.lstrip("/"))
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        match = _RANGE.match(self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault.startswith("cut:"):
            self.server.faults.pop(self.path)
            self.wfile.write(body[: int(fault.split(":")[1])])
            self.wfile.flush()
            self.close_connection = True
            return
        if fault == "slow":
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(body)

    def _endless(self) -> None:
        self.send_response(200)
        self.end_headers()
        chunk = b" " * 65536
        try:
            for _ in range(10_000):  # 640 MiB at most, should the client not stop
                self.wfile.write(chunk)
        except OSError:
            pass


class FaultyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.faults: dict[str, str] = {}
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serve(root: Path) -> Iterator[FaultyServer]:
    server = FaultyServer(root)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
