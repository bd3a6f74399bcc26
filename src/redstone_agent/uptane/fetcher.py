"""HTTP for the trust layer: a ``tuf.ngclient`` fetcher on requests, and resumable targets.

Defences live here because they are about the wire: connect/read timeouts, a
minimum average rate per window for every file and a whole-file deadline for
metadata (slow-retrieval attack; see ``redstone_agent.pace``), byte caps
enforced while streaming (endless-data attack), retries with jittered backoff for transient
failures only, and Range requests so a big image survives a flaky link.

A target download also survives the process: every few MiB the ``.part``
file is fsynced and its length recorded in a journal beside it
(``<dest>.part.offset``). A restart truncates the ``.part`` to that durable
length (whatever lies beyond may be garbage after a power cut) and continues
from there with Range instead of from byte 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import requests
import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.ngclient.fetcher import FetcherInterface

from redstone_agent.journal import Journal, JournalCorrupt
from redstone_agent.pace import Clock, Pace, PaceWatch
from redstone_agent.retry import RetryPolicy
from redstone_agent.uptane.errors import DownloadError, DownloadInterrupted

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
CHECKPOINT_BYTES = 4 << 20
"""How much a target download may lose to a power cut: fsync + journal the offset this often."""
Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while a target downloads."""


@dataclass(frozen=True)
class FetchLimits:
    """How slow a download may be; the per-read timeout comes from the RetryPolicy."""

    file_deadline: float = 300.0
    """Seconds one metadata file may take in total, however steadily the bytes trickle.

    Not applied to targets: a fixed total would fail a big image on a slow
    link; ``pace`` bounds them instead."""
    pace: Pace = field(default_factory=Pace)
    """Minimum average rate per window, for metadata and targets; its optional
    ``deadline`` bounds a whole target download, retries included."""


def stream_body(response: requests.Response, url: str, watch: PaceWatch) -> Iterator[bytes]:
    """Yield the body as it arrives, checking the pace (rate, deadline) after every read.

    ``read1`` returns after one socket read, so a server that trickles bytes
    cannot keep us waiting for a 64 KiB chunk to fill up. ``watch`` starts a
    new rate window here (a new connection); its deadline keeps running.
    """
    watch.restart()
    try:
        while chunk := response.raw.read1(CHUNK, decode_content=True):
            slow = watch.overdue() or watch.update(len(chunk))
            if slow is not None:
                raise tuf_errors.SlowRetrievalError(f"{url}: {slow}")
            yield chunk
    except urllib3.exceptions.HTTPError as exc:
        raise requests.ConnectionError(str(exc)) from exc


def _retryable_status(status: int) -> bool:
    """A server error or 'too many requests' may pass; any other status will not."""
    return status >= 500 or status == 429


def _transient(exc: BaseException) -> bool:
    """Worth retrying: network trouble and 5xx/429, never a 4xx or a cap violation."""
    if isinstance(exc, tuf_errors.DownloadHTTPError):
        return _retryable_status(exc.status_code)
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return False
    return isinstance(exc, tuf_errors.DownloadError | requests.RequestException)


class RequestsFetcher(FetcherInterface):
    """The ngclient fetcher: one session (mTLS configured by the caller), retries, deadlines."""

    def __init__(
        self,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        limits: FetchLimits | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.session = session or requests.Session()
        self.retry = retry or RetryPolicy()
        self.limits = limits or FetchLimits()
        self._sleep = sleep
        self.clock = clock

    def metadata_watch(self) -> PaceWatch:
        """The pace of one metadata file: the minimum rate and the whole-file deadline."""
        return replace(self.limits.pace, deadline=self.limits.file_deadline).watch(self.clock)

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self.session.get(url, stream=True, timeout=self.retry.timeout)
        except requests.Timeout as exc:
            raise tuf_errors.SlowRetrievalError(f"{url}: timed out") from exc
        if response.status_code != 200:
            response.close()
            raise tuf_errors.DownloadHTTPError(
                f"{url}: HTTP {response.status_code}", response.status_code
            )
        return self._chunks(url, response)

    def _chunks(self, url: str, response: requests.Response) -> Iterator[bytes]:
        try:
            yield from stream_body(response, url, self.metadata_watch())
        except requests.ConnectionError as exc:
            raise tuf_errors.SlowRetrievalError(f"{url}: {exc}") from exc
        finally:
            response.close()

    def download_bytes(self, url: str, max_length: int) -> bytes:
        """As the base class (cap enforced while streaming), retried when transient."""
        delays = self.retry.delays()
        while True:
            try:
                return super().download_bytes(url, max_length)
            except tuf_errors.DownloadError as exc:
                pause = next(delays, None)
                if pause is None or not _transient(exc):
                    raise
                log.info("retrying %s in %.1f s after: %s", url, pause, exc)
                self._sleep(pause)


class _HttpStatus(DownloadError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _Overflow(DownloadError):
    """More bytes than the verified length: an endless-data attack, never retried."""


def hash_file(path: Path) -> tuple[int, hashlib._Hash]:
    """Size and running sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest


class _DurableOffset:
    """How much of a ``.part`` file is known to be on disk, kept in a journal beside it.

    The offset is only recorded after the file was fsynced up to it, so on
    restart every byte before it is good and everything after it is suspect.
    """

    def __init__(self, part: Path) -> None:
        self.part = part
        self.journal = Journal(part.with_name(part.name + ".offset"))

    def load(self, length: int) -> int:
        """The durable length of the ``.part`` file (0 when unknown, corrupt or impossible)."""
        try:
            state = self.journal.load()
        except JournalCorrupt as exc:
            log.warning("%s; downloading %s from the start", exc, self.part.name)
            return 0
        offset = state.get("offset") if state is not None else 0
        if not isinstance(offset, int) or not 0 <= offset <= length:
            return 0
        try:
            return min(offset, self.part.stat().st_size)
        except FileNotFoundError:
            return 0

    def save(self, out: BinaryIO, offset: int) -> None:
        out.flush()
        os.fsync(out.fileno())
        self.journal.save({"offset": offset})

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.journal.clear()


def download_target(
    fetcher: RequestsFetcher,
    url: str,
    dest: Path,
    length: int,
    sha256: str,
    *,
    progress: Progress | None = None,
    checkpoint_bytes: int = CHECKPOINT_BYTES,
) -> Path:
    """Download a verified target to ``dest``, resuming ``dest.part`` with HTTP Range.

    Never writes more than ``length`` bytes; the file only gets its final name
    after length and sha256 match, so a half-downloaded or tampered image is
    never mistaken for a good one. Every ``checkpoint_bytes`` (and whenever an
    attempt ends) the ``.part`` file is fsynced and its length journaled, so a
    restart after SIGKILL or a power cut continues from there.
    """
    part = dest.with_name(dest.name + ".part")
    durable = _DurableOffset(part)
    dest.parent.mkdir(parents=True, exist_ok=True)
    delays = fetcher.retry.delays()
    watch = fetcher.limits.pace.watch(fetcher.clock)
    while True:
        try:
            _download_once(
                fetcher,
                url,
                durable,
                length,
                progress,
                watch=watch,
                checkpoint_bytes=checkpoint_bytes,
            )
            break
        except (requests.RequestException, tuf_errors.SlowRetrievalError, DownloadError) as exc:
            if isinstance(exc, _Overflow):
                durable.discard()
            pause = next(delays, None)
            retryable = not isinstance(exc, DownloadError) or (
                isinstance(exc, _HttpStatus) and _retryable_status(exc.status)
            )
            if not retryable:
                raise DownloadError(f"{url}: {exc}") from exc
            if pause is None:
                raise DownloadInterrupted(f"{url}: {exc}") from exc
            log.info("resuming %s in %.1f s after: %s", url, pause, exc)
            fetcher._sleep(pause)
    size, digest = hash_file(part)
    if size != length or digest.hexdigest() != sha256:
        durable.discard()
        raise DownloadError(f"{url}: downloaded file does not match the verified sha256/length")
    part.replace(dest)
    durable.journal.clear()
    return dest


def _download_once(
    fetcher: RequestsFetcher,
    url: str,
    durable: _DurableOffset,
    length: int,
    progress: Progress | None,
    *,
    watch: PaceWatch,
    checkpoint_bytes: int,
) -> None:
    part = durable.part
    have = durable.load(length)
    if have == length:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    with fetcher.session.get(url, headers=headers, stream=True, timeout=fetcher.retry.timeout) as r:
        if r.status_code == 200:
            have = 0  # server ignored Range: start over
        elif r.status_code != 206 or not have:
            raise _HttpStatus(r.status_code)
        with part.open("r+b" if have else "wb") as out:
            out.seek(have)
            out.truncate()  # drop whatever lies beyond the durable offset
            if not have:
                durable.save(out, 0)  # starting over: an older offset no longer holds
            checkpoint = have + checkpoint_bytes
            try:
                for chunk in stream_body(r, url, watch):
                    if have + len(chunk) > length:
                        raise _Overflow(f"server sent more than the verified {length} bytes")
                    out.write(chunk)
                    have += len(chunk)
                    if have >= checkpoint:
                        durable.save(out, have)
                        checkpoint = have + checkpoint_bytes
                    if progress is not None:
                        progress(have, length)
            finally:
                with contextlib.suppress(OSError):
                    durable.save(out, have)  # a retry (or restart) continues exactly here
    if have != length:
        raise requests.ConnectionError(f"connection ended at {have} of {length} bytes")
