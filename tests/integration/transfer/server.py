"""A scriptable HTTP/1.1 file server for transfer tests: real sockets, real failures.

It serves one blob with ETag/Last-Modified and honours ``Range`` + ``If-Range``
like a correct server, and each request can be scripted to misbehave: die
after N body bytes, stall, trickle, answer with a status, lie about the
length, stream forever, ignore Range, or serve a changed file.

A trickle (``Drip``) also advances the server's ``SimClock`` by a simulated
time per write, so a test can hand that clock to the client and play "a byte
every 5 s" in milliseconds.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SimClock:
    """Simulated monotonic seconds, advanced by the server as it drips (thread-safe enough:
    one float, written by one handler at a time)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Drip:
    """Send the body ``size`` bytes at a time, ``pause`` real seconds apart."""

    size: int = 1
    pause: float = 0.001
    simulated: float = 0.0
    """Seconds the behaviour's SimClock advances per write."""


@dataclass
class Act:
    """What the server does with one request; the defaults serve it correctly."""

    status: int | None = None
    """Answer with this status and an empty body instead of the file."""
    die_after: int | None = None
    """Close the connection after this many body bytes."""
    stall: float = 0.0
    """Sleep this long before closing a connection scripted to die."""
    claim_length: int | None = None
    """Announce this Content-Length instead of the true one."""
    drip: Drip | None = None
    """Trickle the body (up to ``die_after`` bytes, if set) instead of sending it at once."""


@dataclass
class Blob:
    content: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = "Wed, 25 Nov 2026 01:00:00 GMT"


@dataclass
class Seen:
    range: str | None
    if_range: str | None


@dataclass
class Behaviour:
    blob: Blob
    script: list[Act] = field(default_factory=list)
    honour_range: bool = True
    endless: bool = False
    after_first: Blob | None = None
    """Serve this blob from the second request on (the file changed on the server)."""
    seen: list[Seen] = field(default_factory=list)
    clock: SimClock = field(default_factory=SimClock)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    behaviour: Behaviour

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up mid-body is what these tests do; keep the output clean."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests assert on ``Behaviour.seen`` instead."""

    def do_GET(self) -> None:
        plan = self.server.behaviour
        with plan.lock:
            plan.seen.append(Seen(self.headers.get("Range"), self.headers.get("If-Range")))
            act = plan.script.pop(0) if plan.script else Act()
            blob = plan.after_first if plan.after_first and len(plan.seen) > 1 else plan.blob
        if act.status is not None:
            self.send_response(act.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if plan.endless:
            self._endless()
            return
        start = self._range_start(plan, blob)
        if start is None:
            return
        body = blob.content[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(act.claim_length or len(body)))
        if start:
            total = len(blob.content)
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        if blob.etag:
            self.send_header("ETag", blob.etag)
        if blob.last_modified:
            self.send_header("Last-Modified", blob.last_modified)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if act.drip is not None:
            self._drip(body[: act.die_after], act.drip, plan.clock)
            if act.die_after is None:
                return
        if act.die_after is not None:
            if act.drip is None:
                self.wfile.write(body[: act.die_after])
            self.wfile.flush()
            time.sleep(act.stall)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)
        if act.claim_length is not None:  # the framing is broken now: end the connection
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _drip(self, body: bytes, drip: Drip, clock: SimClock) -> None:
        for start in range(0, len(body), drip.size):
            try:
                self.wfile.write(body[start : start + drip.size])
                self.wfile.flush()
            except OSError:  # the client gave up on us, as it should
                return
            clock.now += drip.simulated
            time.sleep(drip.pause)

    def _range_start(self, plan: Behaviour, blob: Blob) -> int | None:
        """Offset to serve from (0 = whole file), or None after answering 416 itself."""
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match is None or not plan.honour_range:
            return 0
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range not in (blob.etag, blob.last_modified):
            return 0
        start = int(match[1])
        if start >= len(blob.content):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(blob.content)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return start

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b"\xa5" * 65536
        try:
            for _ in range(1 << 14):  # 1 GiB at most, should the client never stop
                self.wfile.write(chunk)
        except OSError:
            return


@contextmanager
def serving(blob: Blob) -> Iterator[tuple[str, Behaviour]]:
    """Run the server on an ephemeral loopback port; yield its URL and its behaviour."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.behaviour = Behaviour(blob)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/image.bin", server.behaviour
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
