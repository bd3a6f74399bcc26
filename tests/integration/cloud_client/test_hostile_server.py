"""The client against a real HTTP server that misbehaves on purpose.

The backend never sends endless bodies or trickles bytes, so the defences of
docs/api.md §1 on the vehicle side (bounded reads, deadlines, no redirects, no
decompression, retries only where safe) are exercised here against a small
stdlib server whose answers the test scripts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from redstone_agent.cloud import (
    CloudConfig,
    CloudConflict,
    CloudProtocolError,
    CloudUnavailable,
    DeviceClient,
)
from redstone_agent.retry import RetryPolicy

VIN = "RSTEST00000000001"
POLL_BODY = json.dumps({"poll_interval_s": 60, "update": None, "vin": VIN}).encode()

Script = Callable[["_Handler"], None]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Scripted:
    """Answers in order, one per request; what each request looked like."""

    answers: list[Script] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    written: int = 0
    """Body bytes the server managed to write (the client's cap shows here)."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        script = self.server.script
        script.seen.append(Seen(self.command, self.path, dict(self.headers), body))
        script.answers.pop(0)(self)

    do_GET = do_POST = _serve

    def reply(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.script.written += len(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: Scripted


@contextmanager
def scripted(*answers: Script, timeout: float = 1.0) -> Iterator[tuple[DeviceClient, Scripted]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.script = Scripted(list(answers))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    config = CloudConfig(f"http://127.0.0.1:{server.server_address[1]}", VIN, timeout=timeout)
    retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01)
    try:
        with DeviceClient(config, retry=retry) as client:
            yield client, server.script
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def ok(body: bytes = POLL_BODY, **headers: str) -> Script:
    return lambda h: h.reply(200, body, **headers)


def status(code: int, body: bytes = b"") -> Script:
    return lambda h: h.reply(code, body)


def endless(h: _Handler) -> None:
    h.send_response(200)
    h.end_headers()
    try:
        for _ in range(4096):  # 256 MiB at most, should the client not stop
            h.wfile.write(b" " * 65536)
            h.server.script.written += 65536
    except OSError:
        pass


def trickle(h: _Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(POLL_BODY)))
    h.end_headers()
    try:
        for i in range(len(POLL_BODY)):
            h.wfile.write(POLL_BODY[i : i + 1])
            h.wfile.flush()
            time.sleep(0.1)
    except OSError:
        pass


def test_endless_poll_body_is_cut_off() -> None:
    with scripted(endless) as (client, script), pytest.raises(CloudProtocolError) as failed:
        client.poll()
    assert str(failed.value) == (
        "GET /api/v1/device/poll: answer exceeds the 262144-byte limit; not read further"
    )
    assert len(script.seen) == 1, "an oversize answer is not retried"


def test_lying_content_length_is_refused_unread() -> None:
    with scripted(ok(Content_Length=str(2**40))) as (client, _), pytest.raises(CloudProtocolError):
        client.poll()


def test_trickled_answer_hits_the_deadline_and_is_retried() -> None:
    started = time.monotonic()
    with scripted(trickle, trickle, trickle, timeout=0.3) as (client, script):
        with pytest.raises(CloudUnavailable, match=r"answer not complete within 0\.3 s"):
            client.poll()
        assert len(script.seen) == 3
    assert time.monotonic() - started < 5


def test_outage_then_success_is_retried_within_one_poll() -> None:
    with scripted(status(503), status(429), ok(ETag='"v1"')) as (client, script):
        result = client.poll()
        assert (result.update, result.poll_interval_s, result.changed) == (None, 60.0, True)
        assert len(script.seen) == 3


def test_redirects_are_not_followed() -> None:
    """Following one would present the vehicle's certificate to wherever it points."""
    redirect: Script = lambda h: h.reply(307, Location="http://127.0.0.1:9/x")  # noqa: E731
    with scripted(redirect) as (client, script), pytest.raises(CloudProtocolError, match="307"):
        client.poll()
    assert len(script.seen) == 1


def test_bad_304_forgets_the_etag_so_the_next_poll_recovers() -> None:
    bad_304: Script = lambda h: h.reply(304, ETag='"other"')  # noqa: E731
    with scripted(ok(ETag='"v1"'), bad_304, ok(ETag='"v2"')) as (client, script):
        client.poll()
        with pytest.raises(CloudProtocolError, match='names ETag "other"'):
            client.poll()
        assert client.poll().changed is False  # same content as the first answer
    assert script.seen[1].headers["If-None-Match"] == '"v1"'
    assert "If-None-Match" not in script.seen[2].headers


def test_requests_carry_what_the_api_asks_for() -> None:
    with scripted(
        ok(ETag='"v1"'),
        status(304),
        ok(b'{"nonce": "' + b"0a" * 16 + b'"}'),
        status(409, b'{"error": "manifest nonce was already used: replayed manifest rejected"}'),
        ok(b'{"assignment": null}'),
        lambda h: h.reply(201, b'{"id": 7}'),
    ) as (client, script):
        assert client.poll().changed
        assert client.poll().changed is False
        nonce = client.nonce()
        with pytest.raises(CloudConflict):
            client.post_manifest(b'{"signed": {}}')
        client.event("install_failed", "c1", ecu_serial="e1", detail={"code": 3})
        assert client.upload_log("c1", "adas-sub", "line ä\n") == 7
    poll1, poll2, nonce_req, manifest, event, log = script.seen
    assert (poll1.method, poll1.path) == ("GET", "/api/v1/device/poll")
    assert "If-None-Match" not in poll1.headers
    assert poll2.headers["If-None-Match"] == '"v1"'
    assert poll1.headers["Accept-Encoding"] == "identity"
    assert nonce == "0a" * 16
    assert (nonce_req.method, nonce_req.path) == ("POST", "/api/v1/device/nonce")
    assert (manifest.path, manifest.body) == ("/api/v1/device/manifest", b'{"signed": {}}')
    assert manifest.headers["Content-Type"] == "application/json"
    assert event.path == "/api/v1/device/events"
    assert json.loads(event.body) == {
        "kind": "install_failed",
        "campaign": "c1",
        "ecu_serial": "e1",
        "detail": {"code": 3},
    }
    assert log.path == "/api/v1/device/logs?source=adas-sub&campaign=c1"
    assert log.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert log.body == "line ä\n".encode()


def test_manifest_is_never_retried_but_events_are() -> None:
    with scripted(status(502), status(502), ok(b"{}")) as (client, script):
        with pytest.raises(CloudUnavailable, match="server answered HTTP 502"):
            client.post_manifest(b"{}")
        assert len(script.seen) == 1
        client.event("download_started", "c1")
        assert len(script.seen) == 3
