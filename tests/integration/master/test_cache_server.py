"""The in-vehicle cache server over real HTTP: what Subs may fetch, and how.

The server runs on its own event loop thread (as in the Master daemon);
requests come from ``requests``, raw ``http.client`` (to send paths no
client would normalise) and the Sub's real ``transfer.open_source``.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import logging
import shutil
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from redstone_agent.master.cache import Cache
from redstone_agent.master.cache_server import CacheServer
from redstone_agent.master.errors import CacheError
from redstone_agent.retry import RetryPolicy
from redstone_agent.transfer import open_source
from redstone_agent.uptane.fetcher import Progress

T = TypeVar("T")
MiB = 1 << 20


class LoopThread:
    """An asyncio loop on a thread, like the daemon's, driven from synchronous tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def local_copy(source: Path) -> Any:
    """A Fetch from a local file (a USB bundle, say): the cache still checks the hash."""

    def fetch(dest: Path, progress: Progress | None) -> Path:
        shutil.copyfile(source, dest)
        return dest

    return fetch


def store(cache: Cache, tmp_path: Path, data: bytes) -> str:
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    cache.download(local_copy(source), sha, len(data))
    return sha


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache", 256 * MiB)


@pytest.fixture
def server(cache: Cache, loop: LoopThread) -> Iterator[CacheServer]:
    server = CacheServer(cache, "127.0.0.1", 0)
    loop.run(server.start())
    yield server
    loop.run(server.close())


DATA = bytes(range(256)) * 4096  # 1 MiB


def test_a_verified_target_is_served_whole(
    cache: Cache, server: CacheServer, tmp_path: Path
) -> None:
    sha = store(cache, tmp_path, DATA)

    response = requests.get(server.target_url(sha), timeout=10)

    assert server.port > 0
    assert server.target_url(sha) == f"http://127.0.0.1:{server.port}/targets/{sha}"
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert "ETag" in response.headers


END = len(DATA) - 1


@pytest.mark.parametrize(
    ("header", "span"),
    [("bytes=1000-", (1000, END)), ("bytes=10-19", (10, 19)), ("bytes=-100", (END - 99, END))],
)
def test_ranges_are_answered_206(
    cache: Cache, server: CacheServer, tmp_path: Path, header: str, span: tuple[int, int]
) -> None:
    sha = store(cache, tmp_path, DATA)
    first, last = span

    response = requests.get(server.target_url(sha), headers={"Range": header}, timeout=10)

    assert response.status_code == 206
    assert response.content == DATA[first : last + 1]
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"


def test_an_unsatisfiable_range_is_416(cache: Cache, server: CacheServer, tmp_path: Path) -> None:
    sha = store(cache, tmp_path, DATA)

    response = requests.get(
        server.target_url(sha), headers={"Range": f"bytes={len(DATA)}-"}, timeout=10
    )

    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_if_range_with_a_stale_date_sends_the_whole_file(
    cache: Cache, server: CacheServer, tmp_path: Path
) -> None:
    """A resume is only spliced onto the same file.

    aiohttp 3.14 checks only the date form of If-Range (the ETag form is
    ignored; aio-libs/aiohttp#13480 adds it). Here that is harmless: a URL
    names a hash, so its bytes never change, and the Sub's HttpSource checks
    the ETag of every 206 itself.
    """
    sha = store(cache, tmp_path, DATA)
    last_modified = requests.get(server.target_url(sha), timeout=10).headers["Last-Modified"]
    url = server.target_url(sha)

    same = requests.get(url, headers={"Range": "bytes=10-", "If-Range": last_modified}, timeout=10)
    stale = requests.get(
        url, headers={"Range": "bytes=10-", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"}, timeout=10
    )

    assert same.status_code == 206
    assert same.content == DATA[10:]
    assert stale.status_code == 200
    assert stale.content == DATA


def test_a_campaign_reusing_a_target_does_not_change_its_validators(
    cache: Cache, server: CacheServer, tmp_path: Path
) -> None:
    """reserve() marks needed files used; a Sub mid-download must still be able to resume."""
    sha = store(cache, tmp_path, DATA)
    blob = cache.put_blob(b"bundle")
    before = requests.get(server.target_url(sha), timeout=10).headers
    blob_before = requests.get(server.metadata_url(blob), timeout=10).headers["ETag"]

    cache.reserve({sha: len(DATA)}, keep={blob})
    cache.put_blob(b"bundle")

    after = requests.get(server.target_url(sha), timeout=10).headers
    assert (after["ETag"], after["Last-Modified"]) == (before["ETag"], before["Last-Modified"])
    assert requests.get(server.metadata_url(blob), timeout=10).headers["ETag"] == blob_before


def test_the_metadata_bundle_is_served(cache: Cache, server: CacheServer) -> None:
    bundle = b'{"director": {"root": "..."}, "image": {}}'
    sha = cache.put_blob(bundle)

    response = requests.get(server.metadata_url(sha), timeout=10)

    assert server.metadata_url(sha) == f"http://127.0.0.1:{server.port}/metadata/{sha}"
    assert response.status_code == 200
    assert response.content == bundle
    assert requests.get(server.target_url(sha), timeout=10).status_code == 404


def test_a_partial_download_is_not_served(cache: Cache, server: CacheServer) -> None:
    sha = hashlib.sha256(DATA).hexdigest()
    partial = cache.directory / "partial"
    (partial / f"{sha}.part").write_bytes(DATA[: len(DATA) // 2])
    (partial / sha).write_bytes(DATA)  # even one the fetch finished but the cache did not check

    for url in (
        server.target_url(sha),
        f"http://127.0.0.1:{server.port}/partial/{sha}.part",
        f"http://127.0.0.1:{server.port}/targets/{sha}.part",
    ):
        assert requests.get(url, timeout=10).status_code == 404, url


@pytest.mark.parametrize(
    "path",
    [
        "/targets/../partial/{sha}",
        "/targets/..%2fpartial%2f{sha}",
        "/targets/%2e%2e/partial/{sha}",
        "/metadata/../targets/{sha}",
        "/targets/{SHA}",
        "/targets/{sha}/",
        "/targets//{sha}",
        "/targets/",
        "/",
        "/targets/../../../../etc/passwd",
        "/targets/{sha}%00",
    ],
)
def test_path_tricks_are_refused(
    cache: Cache, server: CacheServer, tmp_path: Path, path: str
) -> None:
    sha = store(cache, tmp_path, DATA)
    (cache.directory / "partial" / sha).write_bytes(b"unchecked")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path.format(sha=sha, SHA=sha.upper()))
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 404
    assert body != DATA


def test_only_get_and_head(cache: Cache, server: CacheServer, tmp_path: Path) -> None:
    sha = store(cache, tmp_path, DATA)

    head = requests.head(server.target_url(sha), timeout=10)
    put = requests.put(server.target_url(sha), data=b"evil", timeout=10)

    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(DATA))
    assert put.status_code == 405
    assert cache.path(sha).read_bytes() == DATA


def test_a_sub_streams_a_target_with_range_resume_across_a_server_restart(
    cache: Cache, loop: LoopThread, tmp_path: Path
) -> None:
    """The Sub's real HttpSource: the server goes away mid-transfer and comes back."""
    data = hashlib.sha256(b"seed").digest() * (2 * MiB)  # 64 MiB: more than socket buffers hold
    sha = store(cache, tmp_path, data)
    server = CacheServer(cache, "127.0.0.1", 0)
    loop.run(server.start())
    port = server.port
    digest = hashlib.sha256()
    retry = RetryPolicy(attempts=50, base_delay=0.05, max_delay=0.2, timeout=10)
    try:
        with open_source(
            server.target_url(sha), retry=retry, max_bytes=len(data), chunk_size=1 << 16
        ) as source:
            chunks = iter(source)
            digest.update(next(chunks))
            loop.run(server.close())  # the transfer is cut mid-way
            server = CacheServer(cache, "127.0.0.1", port)
            loop.run(server.start())
            for chunk in chunks:
                digest.update(chunk)
            resumed, received = source.resumed, source.received
    finally:
        loop.run(server.close())

    assert resumed >= 1
    assert received == len(data)
    assert digest.hexdigest() == sha


def test_an_address_in_use_is_a_one_line_error(
    cache: Cache, server: CacheServer, loop: LoopThread
) -> None:
    clash = CacheServer(cache, "127.0.0.1", server.port)

    with pytest.raises(CacheError) as caught:
        loop.run(clash.start())

    assert str(caught.value).startswith(f"cache server cannot listen on 127.0.0.1:{server.port}: ")
    assert "\n" not in str(caught.value)
    with pytest.raises(CacheError, match="not running"):
        _ = clash.port


def test_ipv6_urls_bracket_the_host(cache: Cache, loop: LoopThread, tmp_path: Path) -> None:
    sha = store(cache, tmp_path, DATA)
    server = CacheServer(cache, "::1", 0)
    try:
        loop.run(server.start())
    except CacheError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        url = server.target_url(sha)
        assert url == f"http://[::1]:{server.port}/targets/{sha}"
        assert requests.get(url, timeout=10).content == DATA
    finally:
        loop.run(server.close())


def test_requests_are_logged_at_debug_level_only(
    cache: Cache, server: CacheServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sha = store(cache, tmp_path, DATA)
    caplog.set_level(logging.DEBUG, logger="redstone_agent.master.cache_server")

    with requests.Session() as session:  # one connection: a request is logged before the next
        session.get(server.target_url(sha), headers={"Range": "bytes=0-9"}, timeout=10)
        session.get(server.target_url(sha) + "x", timeout=10)
        session.get(server.metadata_url(sha), timeout=10)

    lines = [r for r in caplog.records if r.name == "redstone_agent.master.cache_server"]
    assert {r.levelno for r in lines} == {logging.DEBUG}
    assert f"GET /targets/{sha} -> 206 (" in lines[0].getMessage()
    assert f"GET /targets/{sha}x -> 404 (" in lines[1].getMessage()
