"""The Master's target cache against a real local HTTP server (the 'cloud').

Downloads go through the real ``uptane.fetcher.download_target`` (the Fetch the
Master builds from a PrimaryVerifier is that function with the target's URL,
length and hash bound), so resume, caps and hash checks are the real ones.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from redstone_agent.errors import RedstoneError
from redstone_agent.journal import Journal
from redstone_agent.master.cache import Cache, Fetch
from redstone_agent.master.errors import CacheError, CacheFull
from redstone_agent.retry import RetryPolicy
from redstone_agent.uptane.errors import DownloadError
from redstone_agent.uptane.fetcher import Progress, RequestsFetcher, download_target

KiB = 1 << 10
MiB = 1 << 20
ONE_TRY = RetryPolicy(attempts=1, timeout=10)
PATIENT = RetryPolicy(attempts=5, base_delay=0.0, timeout=10)


# -- a tiny cloud: files by name, Range, and scripted misbehaviour ------------------


@dataclass
class Cloud:
    """What the server holds and does; ``ranges`` is every (name, Range header) it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: list[tuple[str, str | None]] = field(default_factory=list)
    endless: set[str] = field(default_factory=set)
    die_after: dict[str, int] = field(default_factory=dict)
    """Close the connection after this many body bytes (once)."""
    rate: dict[str, int] = field(default_factory=dict)
    """Send this file at about this many bytes per second (0: full speed)."""
    ignore_range: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def add(self, name: str, data: bytes) -> tuple[str, str, int]:
        """Publish ``data``; return its URL, sha256 and length."""
        self.files[name] = data
        return f"{self.base}/{name}", hashlib.sha256(data).hexdigest(), len(data)

    def range_starts(self, name: str) -> list[int]:
        starts = []
        for seen, header in self.ranges:
            match = re.fullmatch(r"bytes=(\d+)-", header or "")
            if seen == name:
                starts.append(int(match[1]) if match else 0)
        return starts


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    cloud: Cloud

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up mid-body is what these tests do."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests assert on Cloud.ranges."""

    def do_GET(self) -> None:
        cloud = self.server.cloud
        name = self.path.lstrip("/")
        with cloud.lock:
            cloud.ranges.append((name, self.headers.get("Range")))
            die = cloud.die_after.pop(name, None)
        if name in cloud.endless:
            self._endless()
            return
        data = cloud.files.get(name)
        if data is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match[1]) if match and name not in cloud.ignore_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if die is not None:
            self.wfile.write(body[:die])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        chunk = 64 * KiB
        for offset in range(0, len(body), chunk):
            self.wfile.write(body[offset : offset + chunk])
            rate = cloud.rate.get(name, 0)
            if rate:
                self.wfile.flush()
                time.sleep(chunk / rate)  # pacing the sender, not timing a test

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for _ in range(1 << 14):  # 1 GiB at most, should the client never stop
                self.wfile.write(b"\xa5" * 65536)
        except OSError:
            return


@contextmanager
def serving_cloud() -> Iterator[Cloud]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.cloud = Cloud(base=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.cloud
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def http_fetch(
    url: str,
    sha256: str,
    length: int,
    *,
    retry: RetryPolicy = PATIENT,
    checkpoint_bytes: int = 64 * KiB,
) -> Fetch:
    """What the Master's ``partial(verifier.download, target)`` does, for a plain URL."""
    fetcher = RequestsFetcher(retry=retry)

    def fetch(dest: Path, progress: Progress | None) -> Path:
        return download_target(
            fetcher, url, dest, length, sha256, progress=progress, checkpoint_bytes=checkpoint_bytes
        )

    return fetch


def payload(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    with serving_cloud() as cloud:
        yield cloud


def add_target(cache: Cache, cloud: Cloud, name: str, size: int, *, used: float) -> str:
    """Download one target into the cache and date its last use."""
    url, sha, length = cloud.add(name, payload(size, hash(name)))
    cache.download(http_fetch(url, sha, length), sha, length)
    os.utime(cache.path(sha), (used, used))
    return sha


def interrupted(cache: Cache, cloud: Cloud, name: str, data: bytes, after: int) -> str:
    """Start a download that loses its connection after ``after`` bytes and gives up."""
    url, sha, length = cloud.add(name, data)
    cloud.die_after[name] = after
    with pytest.raises(DownloadError):
        cache.download(http_fetch(url, sha, length, retry=ONE_TRY), sha, length)
    return sha


def partial_files(cache: Cache) -> list[str]:
    return sorted(p.name for p in (cache.directory / "partial").iterdir())


# -- downloading ------------------------------------------------------------------


def test_download_stores_the_verified_file_under_its_hash(tmp_path: Path, cloud: Cloud) -> None:
    cache = Cache(tmp_path, 4 * MiB)
    data = payload(300 * KiB, 1)
    url, sha, length = cloud.add("a.bin", data)
    seen: list[tuple[int, int]] = []

    path = cache.download(http_fetch(url, sha, length), sha, length, progress=_record(seen))

    assert path == cache.path(sha) == tmp_path / "targets" / sha
    assert path.read_bytes() == data
    assert cache.has(sha, length)
    assert not cache.has(sha, length + 1)
    assert cache.usage() == length
    assert partial_files(cache) == []
    assert seen[-1] == (length, length)
    # present already: no second request
    assert cache.download(http_fetch(url, sha, length), sha, length) == path
    assert cloud.range_starts("a.bin") == [0]


def _record(seen: list[tuple[int, int]]) -> Progress:
    return lambda done, total: seen.append((done, total))


def test_a_broken_connection_resumes_by_range_in_the_same_call(
    tmp_path: Path, cloud: Cloud
) -> None:
    cache = Cache(tmp_path, 4 * MiB)
    url, sha, length = cloud.add("a.bin", payload(1 * MiB, 2))
    cloud.die_after["a.bin"] = 300 * KiB

    cache.download(http_fetch(url, sha, length), sha, length)

    assert cloud.range_starts("a.bin") == [0, 300 * KiB]
    assert cache.has(sha, length)


def test_resume_truncates_garbage_beyond_the_journaled_offset(tmp_path: Path, cloud: Cloud) -> None:
    """After a power cut the .part may be longer than what was durable, and its tail garbage."""
    cache = Cache(tmp_path, 4 * MiB)
    data = payload(1 * MiB, 3)
    sha = interrupted(cache, cloud, "a.bin", data, after=400 * KiB)
    part = tmp_path / "partial" / f"{sha}.part"
    journaled = Journal(part.with_name(part.name + ".offset")).load()
    assert journaled == {"offset": 400 * KiB}
    with part.open("ab") as f:
        f.write(b"\x00garbage after the power cut" * 1000)

    url = f"{cloud.base}/a.bin"
    cache.download(http_fetch(url, sha, len(data), retry=ONE_TRY), sha, len(data))

    assert cloud.range_starts("a.bin") == [0, 400 * KiB]
    assert cache.path(sha).read_bytes() == data
    assert partial_files(cache) == []


def test_a_corrupt_offset_journal_restarts_from_zero(tmp_path: Path, cloud: Cloud) -> None:
    cache = Cache(tmp_path, 4 * MiB)
    data = payload(1 * MiB, 4)
    sha = interrupted(cache, cloud, "a.bin", data, after=400 * KiB)
    (tmp_path / "partial" / f"{sha}.part.offset").write_text("{not json")

    cache.download(http_fetch(f"{cloud.base}/a.bin", sha, len(data)), sha, len(data))

    assert cloud.range_starts("a.bin") == [0, 0]
    assert cache.path(sha).read_bytes() == data


def test_a_server_ignoring_range_resets_the_journaled_offset_at_once(
    tmp_path: Path, cloud: Cloud
) -> None:
    """Starting over must not leave the old offset on record: a kill would trust new bytes."""
    cache = Cache(tmp_path, 4 * MiB)
    data = payload(1 * MiB, 12)
    sha = interrupted(cache, cloud, "a.bin", data, after=400 * KiB)
    cloud.ignore_range.add("a.bin")
    journal = Journal(tmp_path / "partial" / f"{sha}.part.offset")
    on_record: list[object] = []

    def progress(done: int, total: int) -> None:
        if not on_record:
            on_record.append(journal.load())

    url = f"{cloud.base}/a.bin"
    fetch = http_fetch(url, sha, len(data), checkpoint_bytes=1 * MiB)
    cache.download(fetch, sha, len(data), progress=progress)

    assert cloud.range_starts("a.bin") == [0, 400 * KiB]  # asked, but got the whole file
    assert on_record == [{"offset": 0}]
    assert cache.path(sha).read_bytes() == data


def test_a_hash_mismatch_deletes_the_partial_with_a_one_line_error(
    tmp_path: Path, cloud: Cloud
) -> None:
    cache = Cache(tmp_path, 4 * MiB)
    signed = payload(200 * KiB, 5)
    url, _, length = cloud.add("a.bin", payload(200 * KiB, 6))  # the server sends other bytes
    sha = hashlib.sha256(signed).hexdigest()

    with pytest.raises(DownloadError) as caught:
        cache.download(http_fetch(url, sha, length), sha, length)

    assert "\n" not in str(caught.value)
    assert "does not match the verified sha256" in str(caught.value)
    assert partial_files(cache) == []
    assert not cache.has(sha, length)


def test_the_cache_checks_the_hash_itself_whatever_the_fetch_claims(
    tmp_path: Path, cloud: Cloud
) -> None:
    """A Fetch bound to another target (a Master bug) cannot file bytes under a wrong name."""
    cache = Cache(tmp_path, 4 * MiB)
    url, other_sha, length = cloud.add("other.bin", payload(200 * KiB, 7))
    wanted = hashlib.sha256(payload(200 * KiB, 8)).hexdigest()

    with pytest.raises(CacheError) as caught:
        cache.download(http_fetch(url, other_sha, length), wanted, length)

    assert str(caught.value) == (
        f"target {wanted[:16]}: downloaded {length} bytes with sha256 {other_sha[:16]}, "
        f"expected {length} bytes; discarded"
    )
    assert partial_files(cache) == []
    assert not cache.has(wanted, length)
    assert not cache.path(other_sha).exists()


def test_an_endless_server_is_cut_at_the_signed_length(tmp_path: Path, cloud: Cloud) -> None:
    cache = Cache(tmp_path, 4 * MiB)
    cloud.endless.add("a.bin")
    length = 100 * KiB
    sha = hashlib.sha256(b"x" * length).hexdigest()

    with pytest.raises(DownloadError) as caught:
        cache.download(http_fetch(f"{cloud.base}/a.bin", sha, length), sha, length)

    assert "more than the verified 102400 bytes" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert partial_files(cache) == []  # nothing kept, and nothing beyond the length was written
    assert cloud.range_starts("a.bin") == [0]  # an attack is not retried


def test_download_refuses_what_was_not_reserved_room_for(tmp_path: Path, cloud: Cloud) -> None:
    cache = Cache(tmp_path, 256 * KiB)
    url, sha, length = cloud.add("big.bin", payload(300 * KiB, 9))

    with pytest.raises(CacheFull, match=r"does not fit in the cache budget of 0\.2 MiB"):
        cache.download(http_fetch(url, sha, length), sha, length)
    assert cloud.ranges == []


# -- the budget -------------------------------------------------------------------


def test_reserve_evicts_least_recently_used_first_until_the_campaign_fits(
    tmp_path: Path, cloud: Cloud
) -> None:
    cache = Cache(tmp_path, 400 * KiB)
    old = add_target(cache, cloud, "old.bin", 100 * KiB, used=1000)
    newer = add_target(cache, cloud, "newer.bin", 100 * KiB, used=3000)
    middle = add_target(cache, cloud, "middle.bin", 100 * KiB, used=2000)
    fresh = hashlib.sha256(b"fresh").hexdigest()

    cache.reserve({fresh: 150 * KiB})  # 450 KiB projected: one file must go, the oldest

    assert not cache.path(old).exists()
    assert cache.has(middle, 100 * KiB)
    assert cache.has(newer, 100 * KiB)

    cache.reserve({fresh: 250 * KiB})  # 450 again: the next oldest goes

    assert not cache.path(middle).exists()
    assert cache.has(newer, 100 * KiB)
    assert cache.usage() == 100 * KiB


def test_partial_downloads_no_one_needs_are_evicted_too(tmp_path: Path, cloud: Cloud) -> None:
    cache = Cache(tmp_path, 1 * MiB)
    abandoned = interrupted(cache, cloud, "abandoned.bin", payload(800 * KiB, 10), after=500 * KiB)
    assert partial_files(cache) == [f"{abandoned}.part", f"{abandoned}.part.offset"]
    assert cache.usage() > 500 * KiB
    fresh = hashlib.sha256(b"fresh").hexdigest()

    cache.reserve({fresh: 600 * KiB})

    assert partial_files(cache) == []


def test_needed_and_kept_files_are_never_evicted(tmp_path: Path, cloud: Cloud) -> None:
    cache = Cache(tmp_path, 450 * KiB)  # all of it, but no room for the metadata blob
    needed = add_target(cache, cloud, "needed.bin", 100 * KiB, used=1000)
    kept = add_target(cache, cloud, "kept.bin", 100 * KiB, used=1001)
    spare = add_target(cache, cloud, "spare.bin", 100 * KiB, used=5000)
    resuming = interrupted(cache, cloud, "resuming.bin", payload(150 * KiB, 11), after=50 * KiB)
    blob = cache.put_blob(b"metadata bundle in use")
    os.utime(cache.blob_path(blob), (10, 10))

    cache.reserve({needed: 100 * KiB, resuming: 150 * KiB}, keep={kept, blob})

    assert cache.has(needed, 100 * KiB)
    assert cache.has(kept, 100 * KiB)
    assert cache.blob_path(blob).exists()
    assert f"{resuming}.part" in partial_files(cache)
    assert not cache.path(spare).exists()  # the newest, but the only one no one wants

    # the interrupted one still resumes where it stopped
    url = f"{cloud.base}/resuming.bin"
    cache.download(http_fetch(url, resuming, 150 * KiB), resuming, 150 * KiB)
    assert cloud.range_starts("resuming.bin") == [0, 50 * KiB]


def test_a_campaign_that_cannot_fit_is_refused_in_one_line_and_nothing_is_evicted(
    tmp_path: Path, cloud: Cloud
) -> None:
    cache = Cache(tmp_path, 256 * MiB)
    spare = add_target(cache, cloud, "spare.bin", 100 * KiB, used=1000)
    huge = {
        hashlib.sha256(b"a").hexdigest(): 200 * MiB,
        hashlib.sha256(b"b").hexdigest(): 110 * MiB,
    }

    with pytest.raises(CacheFull) as caught:
        cache.reserve(huge)

    assert str(caught.value) == "campaign needs 310.0 MiB, cache budget is 256.0 MiB"
    assert cache.has(spare, 100 * KiB)


def test_cache_full_names_what_kept_files_hold(tmp_path: Path, cloud: Cloud) -> None:
    cache = Cache(tmp_path, 400 * KiB)
    kept = [add_target(cache, cloud, f"k{i}.bin", 100 * KiB, used=1000 + i) for i in range(2)]
    fresh = hashlib.sha256(b"fresh").hexdigest()

    with pytest.raises(CacheFull) as caught:
        cache.reserve({fresh: 250 * KiB}, keep=kept)

    assert str(caught.value) == (
        "campaign needs 0.2 MiB, cache budget is 0.4 MiB (0.2 MiB held by 2 kept file(s))"
    )
    assert isinstance(caught.value, RedstoneError)
    assert all(cache.has(sha, 100 * KiB) for sha in kept)


def test_reserve_refreshes_the_files_a_campaign_needs(tmp_path: Path, cloud: Cloud) -> None:
    """A file needed again counts as recently used: the next campaign evicts others first."""
    cache = Cache(tmp_path, 300 * KiB)
    reused = add_target(cache, cloud, "reused.bin", 100 * KiB, used=1000)
    other = add_target(cache, cloud, "other.bin", 100 * KiB, used=2000)
    cache.reserve({reused: 100 * KiB})
    fresh = hashlib.sha256(b"fresh").hexdigest()

    cache.reserve({fresh: 150 * KiB})

    assert cache.has(reused, 100 * KiB)
    assert not cache.path(other).exists()


# -- metadata blobs and names -----------------------------------------------------


def test_put_blob_is_content_addressed_and_counted(tmp_path: Path) -> None:
    cache = Cache(tmp_path, 1 * MiB)
    data = b'{"director": {}, "image": {}}'

    sha = cache.put_blob(data)

    assert sha == hashlib.sha256(data).hexdigest()
    assert cache.blob_path(sha).read_bytes() == data
    assert cache.put_blob(data) == sha
    assert cache.usage() == len(data)
    cache.reserve({hashlib.sha256(b"x").hexdigest(): 1 * MiB})  # needs every byte
    assert not cache.blob_path(sha).exists()


@pytest.mark.parametrize(
    "name", ["../targets", "A" * 64, "a" * 63, "a" * 65, "g" * 64, "", f"{'a' * 64}.part"]
)
def test_only_sha256_names_are_accepted(tmp_path: Path, name: str) -> None:
    cache = Cache(tmp_path, 1 * MiB)
    with pytest.raises(CacheError, match="not a lowercase hex sha256"):
        cache.path(name)
    with pytest.raises(CacheError):
        cache.reserve({name: 1})


def test_a_bad_budget_or_directory_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="positive number of bytes, not 0"):
        Cache(tmp_path, 0)
    (tmp_path / "file").write_text("")
    with pytest.raises(CacheError, match="cannot create cache directory"):
        Cache(tmp_path / "file", 1)
