"""Cloud → Master cache → Sub, with the Master SIGKILLed in the middle of the download.

A real child process fills the cache from a throttled 'cloud' server and is
killed once it has journaled part of the file; the next run must continue
from the journaled offset (the cloud sees a Range request from there, not
from byte 0), and the result is then served to a Sub's real HttpSource.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from redstone_agent.master.cache import Cache
from redstone_agent.master.cache_server import CacheServer
from redstone_agent.transfer import open_source
from tests.integration.master.test_cache_server import LoopThread
from tests.unit.master.test_cache import payload, serving_cloud

MiB = 1 << 20

MASTER = """
import sys
from pathlib import Path

from redstone_agent.master.cache import Cache
from redstone_agent.retry import RetryPolicy
from redstone_agent.uptane.fetcher import RequestsFetcher, download_target

url, directory, sha256, length = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
fetcher = RequestsFetcher(retry=RetryPolicy(attempts=3, base_delay=0.1, timeout=10))

def fetch(dest, progress):
    return download_target(
        fetcher, url, dest, length, sha256, progress=progress, checkpoint_bytes=256 << 10
    )

cache = Cache(directory, 64 << 20)
cache.reserve({sha256: length})
print(cache.download(fetch, sha256, length))
"""


def journaled_offset(journal: Path) -> int:
    """Read the child's offset record without touching its directory (no Journal.load:
    that removes the temporaries a live writer is about to rename)."""
    try:
        return int(json.loads(journal.read_bytes())["state"]["offset"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def wait_for(condition: str, check: Callable[[], bool], child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        if child.poll() is not None:
            raise AssertionError(f"the Master exited ({child.returncode}) before {condition}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting until {condition}")
        time.sleep(0.02)


def test_a_master_killed_mid_download_resumes_from_the_journaled_offset(tmp_path: Path) -> None:
    data = payload(8 * MiB, 42)
    directory = tmp_path / "cache"
    with serving_cloud() as cloud:
        url, sha, length = cloud.add("image.bin", data)
        cloud.rate["image.bin"] = 2 * MiB
        argv = [sys.executable, "-c", MASTER, url, str(directory), sha, str(length)]
        journal = directory / "partial" / f"{sha}.part.offset"

        first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for("1 MiB was journaled", lambda: journaled_offset(journal) >= MiB, first)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        assert first.returncode == -signal.SIGKILL
        offset = journaled_offset(journal)
        assert 0 < offset < length
        part = directory / "partial" / f"{sha}.part"
        with part.open("ab") as f:  # and a power cut left junk past the durable offset
            f.write(b"\xff" * 12345)

        cloud.rate["image.bin"] = 0
        second = subprocess.run(argv, capture_output=True, timeout=120, check=False)

        assert second.returncode == 0, second.stderr.decode()
        assert cloud.range_starts("image.bin") == [0, offset]

    cache = Cache(directory, 64 << 20)
    assert cache.has(sha, length)
    assert hashlib.sha256(cache.path(sha).read_bytes()).hexdigest() == sha
    assert sorted((directory / "partial").iterdir()) == []

    loop = LoopThread()
    server = CacheServer(cache, "127.0.0.1", 0)
    try:
        loop.run(server.start())
        digest = hashlib.sha256()
        with open_source(server.target_url(sha), max_bytes=length) as source:
            for chunk in source:
                digest.update(chunk)
        assert digest.hexdigest() == sha
    finally:
        loop.run(server.close())
        loop.stop()
