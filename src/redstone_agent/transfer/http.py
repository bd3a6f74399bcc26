"""HTTP(S) source that survives broken connections by resuming with Range.

Why not just retry the GET: the bytes already delivered have been consumed
(hashed, written to the slot), so a retry must continue exactly where the
last one stopped, and only if the file on the server is still the same one —
``If-Range`` with the first response's validator makes the server say so.

Why a rate rule on top of the read timeout: a server that trickles a byte
every few seconds never times out a read. Every connection must average
``Pace.min_rate`` over each ``Pace.window`` (see ``redstone_agent.pace``);
a connection that does not is dropped and resumed, and a server that is too
slow on every connection runs out of attempts like one that fails outright.
The body is read with ``read1`` (one socket read at a time), so the rule is
checked after every few bytes of a trickle, not once per filled chunk.

Why a source can start at an offset: an install killed mid-download keeps
what reached the slot, and a new process continues from there. Its first
request already carries ``Range`` (and ``If-Range`` with the validator the
earlier process journaled); anything but the matching 206 of the same file
is ``ResumeRefused`` before a byte is delivered, and the caller starts at 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping

import requests
import urllib3

from redstone_agent.pace import Clock, Pace, PaceWatch
from redstone_agent.retry import RetryPolicy
from redstone_agent.transfer.errors import ResumeRefused, SourceChanged, TransferError
from redstone_agent.transfer.ranges import (
    RETRYABLE_STATUSES,
    check_resumed_range,
    parse_content_range,
    parse_length,
    resume_validator,
)
from redstone_agent.transfer.source import ByteSource

log = logging.getLogger(__name__)

DEFAULT_RETRY = RetryPolicy()
DEFAULT_PACE = Pace()


class _Transient(Exception):
    """A failure worth retrying: connection lost, timeout, 5xx."""


class _TooSlow(_Transient):
    """A connection that brought less than the minimum rate over a whole window."""


class _Backoff:
    """Counts consecutive failures; progress between them starts a fresh budget.

    Progress for a failure is any byte; progress for a too-slow connection is
    a full window at the minimum rate, so a trickle that delivers a little on
    each connection still runs out of attempts.
    """

    def __init__(self, policy: RetryPolicy, source: ByteSource, watch: PaceWatch) -> None:
        self._policy = policy
        self._source = source
        self._watch = watch
        self._slow = 0
        self.reset()

    def reset(self) -> None:
        self._delays = self._policy.delays()
        self._failures = 0

    def wait_after(self, problem: _Transient, cancel: threading.Event | None) -> None:
        """Sleep before the next try, or raise TransferError when the budget is spent."""
        self._failures += 1
        if self._watch.windows_passed:
            self._slow = 0
        if isinstance(problem, _TooSlow):
            self._slow += 1
        late = self._watch.overdue()
        if late is not None:
            raise TransferError(f"{self._source.location}: {late} (last problem: {problem})")
        delay = next(self._delays, None)
        if delay is None or self._slow >= self._policy.attempts:
            attempts = max(self._failures, self._slow)
            raise TransferError(
                f"{self._source.location}: giving up after {attempts} attempts: {problem}"
            )
        log.warning(
            "%s: %s; retry %d in %.2fs", self._source.location, problem, self._failures, delay
        )
        if cancel is None:
            time.sleep(delay)
        else:
            cancel.wait(delay)
        self._source.check_cancel()


class HttpSource(ByteSource):
    """Raw bytes of an http:// or https:// URL, resumed across broken connections.

    With ``offset`` the transfer starts at that byte: the first request asks
    for ``Range: bytes=offset-`` (with ``If-Range: validator`` when the
    caller kept one) and must get ``206`` from exactly ``offset`` with a
    known total and, when an ETag was kept, that same ETag; otherwise
    ``ResumeRefused`` says why and nothing was delivered.
    """

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        cancel: threading.Event | None = None,
        max_bytes: int | None = None,
        chunk_size: int = 1 << 20,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        pace: Pace = DEFAULT_PACE,
        clock: Clock = time.monotonic,
        offset: int = 0,
        validator: str | None = None,
    ) -> None:
        super().__init__(url, cancel=cancel, max_bytes=max_bytes, chunk_size=chunk_size)
        if offset < 0:
            raise ValueError("offset must not be negative")
        self._retry = retry
        self._watch = pace.watch(clock)
        self._headers = {"Accept-Encoding": "identity", **(headers or {})}
        self._own_session = session is None
        self._session = session or requests.Session()
        self.start = offset
        self.validator = validator if offset else None
        self._etag = validator if validator and validator.startswith('"') else None
        self._first = True
        self._backoff = _Backoff(retry, self, self._watch)
        self._response: requests.Response | None = None
        try:
            self._response = self._open_retrying(offset)
        except BaseException:
            self.close()
            raise

    def _open_retrying(self, offset: int) -> requests.Response:
        while True:
            try:
                return self._open(offset)
            except _Transient as problem:
                self._backoff.wait_after(problem, self._cancel)

    def _open(self, offset: int) -> requests.Response:
        """One GET positioned at ``offset``; classifies every failure."""
        headers = dict(self._headers)
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.validator is not None:
                headers["If-Range"] = self.validator
        timeout = self._retry.timeout
        try:
            response = self._session.get(
                self.location, headers=headers, stream=True, timeout=(timeout, timeout)
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            raise _Transient(f"connection failed: {_reason(error)}") from error
        except requests.RequestException as error:
            raise TransferError(f"GET {self.location}: {_reason(error)}") from error
        try:
            self._accept(response, offset)
        except BaseException:
            response.close()
            raise
        return response

    def _accept(self, response: requests.Response, offset: int) -> None:
        status = f"HTTP {response.status_code} {response.reason}"
        if response.status_code in RETRYABLE_STATUSES:
            raise _Transient(status)
        if self._first and offset:
            self._accept_first_range(response, offset, status)
            self._first = False
            return
        if self._first:
            if response.status_code != 200:
                raise TransferError(f"GET {self.location}: {status}")
            self.size = parse_length(response.headers.get("Content-Length"))
            self._check_announced_size()
            self.validator = resume_validator(response.headers)
            self._etag = response.headers.get("ETag")
            self._first = False
            return
        if response.status_code == 200:
            raise SourceChanged(
                f"{self.location} changed on the server (or the server ignores Range) "
                f"after {offset} bytes; start the download again"
            )
        if response.status_code == 416:
            raise TransferError(
                f"{self.location}: server cannot serve bytes from {offset} ({status}); "
                f"the file is shorter than it announced"
            )
        if response.status_code != 206:
            raise TransferError(f"resuming {self.location} at byte {offset}: {status}")
        problem = check_resumed_range(
            offset, self.size, parse_content_range(response.headers.get("Content-Range"))
        )
        etag = response.headers.get("ETag")
        if problem is None and self._etag is not None and etag not in (None, self._etag):
            problem = f"ETag changed from {self._etag} to {etag}"
        if problem is not None:
            raise SourceChanged(f"cannot resume {self.location}: {problem}")
        self.resumed += 1
        log.info("%s: resumed at byte %d", self.location, offset)

    def _accept_first_range(self, response: requests.Response, offset: int, status: str) -> None:
        """The first answer of a source opened at ``offset``: the same file, from there."""
        where = f"cannot continue {self.location} at byte {offset}"
        if response.status_code == 200:
            raise ResumeRefused(
                f"{where}: the server sent the whole file (it changed, or ignores Range)"
            )
        if response.status_code == 416:
            raise ResumeRefused(f"{where}: the file is shorter now ({status})")
        if response.status_code != 206:
            raise TransferError(f"GET {self.location} from byte {offset}: {status}")
        content_range = parse_content_range(response.headers.get("Content-Range"))
        problem = check_resumed_range(offset, None, content_range)
        if problem is None and content_range is not None and content_range.complete is None:
            problem = "the server does not say the file's total length"
        etag = response.headers.get("ETag")
        if problem is None and self._etag is not None and etag not in (None, self._etag):
            problem = f"ETag changed from {self._etag} to {etag}"
        if problem is not None:
            raise ResumeRefused(f"{where}: {problem}")
        assert content_range is not None
        self.size = content_range.complete
        self._check_announced_size()
        if self.validator is None:
            self.validator = resume_validator(response.headers)
        if self._etag is None:
            self._etag = etag
        log.info("%s: continuing at byte %d of %s", self.location, offset, self.size)

    def _chunks(self) -> Iterator[bytes]:
        offset = self.start
        while True:
            if self._response is None:
                self._response = self._open_retrying(offset)
            self._watch.restart()
            try:
                for chunk in self._body(self._response):
                    offset += len(chunk)
                    self._backoff.reset()
                    yield chunk
                    self._check_pace(len(chunk))
                if self.size is not None and offset < self.size:
                    raise _Transient(f"connection closed at byte {offset} of {self.size}")
                return
            except (_Transient, urllib3.exceptions.HTTPError, OSError) as error:
                problem = error if isinstance(error, _Transient) else _Transient(_reason(error))
                self._drop_response()
                self._backoff.wait_after(problem, self._cancel)

    def _body(self, response: requests.Response) -> Iterator[bytes]:
        """The body as it arrives: each read returns after one socket read, up to a chunk."""
        while chunk := response.raw.read1(self._chunk_size, decode_content=False):
            yield chunk

    def _check_pace(self, received: int) -> None:
        late = self._watch.overdue()
        if late is not None:
            raise TransferError(f"{self.location}: {late} ({self.received} bytes received)")
        slow = self._watch.update(received)
        if slow is not None:
            raise _TooSlow(slow)

    def _drop_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def close(self) -> None:
        super().close()
        self._drop_response()
        if self._own_session:
            self._session.close()


def _reason(error: BaseException) -> str:
    """The innermost useful message of a requests/urllib3 exception chain, on one line."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    text = str(error) or type(error).__name__
    return " ".join(text.split())
