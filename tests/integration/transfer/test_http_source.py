"""HttpSource against a real loopback server that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import lzma
import os
import threading
from collections.abc import Iterator

import pytest
import zstandard

from redstone_agent.retry import RetryPolicy
from redstone_agent.transfer import (
    ResumeRefused,
    SourceChanged,
    SourceTooLarge,
    TransferCancelled,
    TransferError,
    decompressing,
    open_source,
)
from tests.integration.transfer.server import Act, Behaviour, Blob, serving

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02, timeout=2.0)
CONTENT = os.urandom(3 << 20) + bytes(1 << 20)


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    with serving(Blob(CONTENT)) as running:
        yield running


def fetch(url: str, **kwargs: object) -> tuple[bytes, int]:
    with open_source(url, retry=FAST, chunk_size=256 << 10, **kwargs) as source:  # type: ignore[arg-type]
        return b"".join(source), source.resumed


def test_plain_download_reports_size_and_no_resume(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    with open_source(url, retry=FAST) as source:
        assert source.size == len(CONTENT)
        assert b"".join(source) == CONTENT
        assert source.resumed == 0
    assert plan.seen[0].range is None


def test_resumes_with_range_and_if_range_after_broken_connections(
    server: tuple[str, Behaviour],
) -> None:
    url, plan = server
    plan.script = [Act(die_after=1_000_000), Act(die_after=5)]
    data, resumed = fetch(url)
    assert data == CONTENT
    assert resumed == 2
    assert [s.range for s in plan.seen] == [None, "bytes=1000000-", "bytes=1000005-"]
    assert plan.seen[1].if_range == '"v1"'


def test_uses_last_modified_when_there_is_no_strong_etag() -> None:
    with serving(Blob(CONTENT, etag='W/"weak"')) as (url, plan):
        plan.script = [Act(die_after=4096)]
        assert fetch(url) == (CONTENT, 1)
        assert plan.seen[1].if_range == "Wed, 25 Nov 2026 01:00:00 GMT"


def test_retries_server_errors_then_succeeds(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(status=503), Act(status=502)]
    assert fetch(url) == (CONTENT, 0)
    assert len(plan.seen) == 3


def test_server_error_while_resuming_is_retried(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(die_after=100), Act(status=500), Act(die_after=100)]
    assert fetch(url) == (CONTENT, 2)


def test_gives_up_after_the_attempt_budget_with_the_last_reason(
    server: tuple[str, Behaviour],
) -> None:
    url, plan = server
    plan.script = [Act(status=503)] * 10
    with pytest.raises(TransferError, match=r"giving up after 4 attempts: HTTP 503"):
        fetch(url)
    assert len(plan.seen) == 4


def test_budget_counts_failures_without_progress_only(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(die_after=1000 * n) for n in range(1, 7)]  # 6 breaks, each with progress
    assert fetch(url) == (CONTENT, 6)


def test_gives_up_when_every_resume_dies_before_a_byte(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(die_after=10)] + [Act(die_after=0)] * 10
    with pytest.raises(TransferError, match="giving up after 4 attempts"):
        fetch(url)


def test_client_errors_are_not_retried(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(status=404)]
    with pytest.raises(TransferError, match=r"HTTP 404 Not Found"):
        fetch(url)
    assert len(plan.seen) == 1


def test_unreachable_server_is_a_clear_error() -> None:
    with socket_that_refuses() as port, pytest.raises(TransferError, match="connection failed"):
        fetch(f"http://127.0.0.1:{port}/x")


def test_changed_etag_is_never_spliced(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.after_first = Blob(os.urandom(len(CONTENT)), etag='"v2"')
    plan.script = [Act(die_after=65536)]
    with pytest.raises(SourceChanged, match="changed on the server"):
        fetch(url)


def test_server_that_ignores_range_is_not_spliced(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.honour_range = False
    plan.script = [Act(die_after=65536)]
    with pytest.raises(SourceChanged):
        fetch(url)


def test_length_announced_too_long_ends_in_a_clear_error(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(claim_length=len(CONTENT) + 1000)]
    with pytest.raises(TransferError, match="shorter than it announced"):
        fetch(url)


def test_length_announced_too_short_yields_only_that_much(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(claim_length=1000)]
    data, _ = fetch(url)
    assert data == CONTENT[:1000]  # the slot writer's length/hash check rejects it


def test_announced_size_over_the_cap_is_refused_before_reading(
    server: tuple[str, Behaviour],
) -> None:
    url, _ = server
    with pytest.raises(SourceTooLarge, match="more than the allowed 1000"):
        open_source(url, retry=FAST, max_bytes=1000)


def test_endless_stream_stops_at_the_cap(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.endless = True
    with open_source(url, retry=FAST, max_bytes=3 << 20) as source:
        assert source.size is None
        received = 0
        with pytest.raises(SourceTooLarge, match="sent more than the allowed"):
            for chunk in source:
                received += len(chunk)
    assert received <= 3 << 20


def test_stalled_connection_times_out_and_resumes(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(die_after=100_000, stall=1.5)]
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01, timeout=0.5)
    with open_source(url, retry=policy, chunk_size=65536) as source:
        assert b"".join(source) == CONTENT
        assert source.resumed == 1


def test_cancel_between_chunks(server: tuple[str, Behaviour]) -> None:
    url, _ = server
    cancel = threading.Event()
    with open_source(url, retry=FAST, cancel=cancel, chunk_size=65536) as source:
        chunks = iter(source)
        next(chunks)
        cancel.set()
        with pytest.raises(TransferCancelled):
            next(chunks)


def test_cancel_interrupts_the_backoff_wait(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(status=503)]
    cancel = threading.Event()
    slow = RetryPolicy(attempts=3, base_delay=60.0, max_delay=60.0, timeout=2.0)
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(TransferCancelled):
        open_source(url, retry=slow, cancel=cancel)


@pytest.mark.parametrize(
    "compress",
    [
        lambda data: lzma.compress(data, preset=0),
        lambda data: zstandard.ZstdCompressor(level=3).compress(data),
    ],
    ids=["xz", "zstd"],
)
def test_compressed_source_over_http_survives_a_resume(compress: object) -> None:
    packed = compress(CONTENT)  # type: ignore[operator]
    with serving(Blob(packed)) as (url, plan):
        plan.script = [Act(die_after=len(packed) // 2)]
        with open_source(url, retry=FAST, chunk_size=65536) as source:
            digest = hashlib.sha256()
            for block in decompressing(source):
                digest.update(block)
            assert source.resumed == 1
    assert digest.hexdigest() == hashlib.sha256(CONTENT).hexdigest()


def test_as_stream_reads_like_a_file(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(die_after=12345)]
    with open_source(url, retry=FAST) as source:
        stream = source.as_stream()
        head = stream.read(10)
        rest = stream.read()
    assert head + rest == CONTENT


class socket_that_refuses:
    """A loopback port that nobody listens on (bound, never listening)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


# -- opened at an offset: continuing the transfer of an earlier (killed) process ------------

OFFSET = 1 << 20


def test_opened_at_an_offset_the_first_request_is_a_guarded_range(
    server: tuple[str, Behaviour],
) -> None:
    url, plan = server
    with open_source(url, retry=FAST, offset=OFFSET, validator='"v1"') as source:
        assert (source.start, source.size, source.validator) == (OFFSET, len(CONTENT), '"v1"')
        assert b"".join(source) == CONTENT[OFFSET:]
    assert [(seen.range, seen.if_range) for seen in plan.seen] == [(f"bytes={OFFSET}-", '"v1"')]


def test_opened_at_an_offset_it_still_resumes_broken_connections(
    server: tuple[str, Behaviour],
) -> None:
    url, plan = server
    plan.script = [Act(die_after=65536)]
    data, resumed = fetch(url, offset=OFFSET, validator='"v1"')
    assert (data, resumed) == (CONTENT[OFFSET:], 1)
    assert plan.seen[1].range == f"bytes={OFFSET + 65536}-"


def test_without_a_kept_validator_it_adopts_the_servers(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    with open_source(url, retry=FAST, offset=OFFSET) as source:
        assert source.validator == '"v1"'
        assert b"".join(source) == CONTENT[OFFSET:]
    assert plan.seen[0].if_range is None


def test_a_retryable_status_on_the_first_range_is_retried(server: tuple[str, Behaviour]) -> None:
    url, plan = server
    plan.script = [Act(status=503)]
    assert fetch(url, offset=OFFSET, validator='"v1"')[0] == CONTENT[OFFSET:]
    assert [seen.range for seen in plan.seen] == [f"bytes={OFFSET}-"] * 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("changed", "the server sent the whole file (it changed, or ignores Range)"),
        ("ignores-range", "the server sent the whole file (it changed, or ignores Range)"),
        ("shorter", "the file is shorter now (HTTP 416"),
    ],
)
def test_a_source_that_cannot_continue_at_the_offset_is_refused_unread(
    server: tuple[str, Behaviour], setup: str, message: str
) -> None:
    """Each case is answered before a body byte is handed over; the caller starts at 0."""
    url, plan = server
    if setup == "changed":
        plan.blob = Blob(os.urandom(len(CONTENT)), etag='"v2"', last_modified=None)
    elif setup == "ignores-range":
        plan.honour_range = False
    else:
        plan.blob = Blob(CONTENT[:OFFSET])
    with pytest.raises(ResumeRefused) as refused:
        open_source(url, retry=FAST, offset=OFFSET, validator='"v1"')
    assert str(refused.value).startswith(f"cannot continue {url} at byte {OFFSET}: {message}")
    assert len(plan.seen) == 1


def test_a_client_error_on_the_first_range_is_a_plain_failure(
    server: tuple[str, Behaviour],
) -> None:
    url, plan = server
    plan.script = [Act(status=404)]
    with pytest.raises(TransferError, match=f"from byte {OFFSET}: HTTP 404") as failed:
        open_source(url, retry=FAST, offset=OFFSET)
    assert not isinstance(failed.value, ResumeRefused)
