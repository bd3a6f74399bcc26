"""Local sources: paths, file:// URLs, devices, caps, cancellation."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from redstone_agent.transfer import (
    ResumeRefused,
    SourceTooLarge,
    TransferCancelled,
    TransferError,
    local_path,
    open_source,
)


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(300_001)
    path = tmp_path / "image with space.bin"
    path.write_bytes(data)
    return path, data


def test_reads_a_path_in_chunks(image: tuple[Path, bytes]) -> None:
    path, data = image
    with open_source(str(path), chunk_size=65536) as source:
        assert source.size == len(data)
        chunks = list(source)
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) == 65536
    assert source.closed


def test_reads_a_file_url(image: tuple[Path, bytes]) -> None:
    path, data = image
    url = path.as_uri()
    assert "%20" in url
    with open_source(url) as source:
        assert b"".join(source) == data


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/a/b", Path("/a/b")),
        ("rel/x.img", Path("rel/x.img")),
        ("file:///a/b%20c", Path("/a/b c")),
        ("file://localhost/a", Path("/a")),
        ("https://h/x", None),
    ],
)
def test_local_path(location: str, expected: Path | None) -> None:
    assert local_path(location) == expected


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("file://elsewhere/a", "remote host is not supported"),
        ("ftp://h/x", "unsupported source scheme 'ftp'"),
        ("/nonexistent/redstone.img", "cannot open source /nonexistent/redstone.img: No such file"),
    ],
)
def test_bad_locations_are_clear_errors(location: str, message: str) -> None:
    with pytest.raises(TransferError, match=message):
        open_source(location)


def test_file_over_the_cap_is_refused_at_open(image: tuple[Path, bytes]) -> None:
    path, _ = image
    with pytest.raises(SourceTooLarge, match="300001 bytes, more than the allowed 1000"):
        open_source(str(path), max_bytes=1000)


def test_endless_device_stops_at_the_cap() -> None:
    with open_source("/dev/zero", max_bytes=5 << 20) as source:
        assert source.size is None
        with pytest.raises(SourceTooLarge):
            for _ in source:
                pass
        assert source.received <= (5 << 20) + (1 << 20)


def test_cancel_stops_between_chunks(image: tuple[Path, bytes]) -> None:
    path, _ = image
    cancel = threading.Event()
    with open_source(str(path), chunk_size=4096, cancel=cancel) as source:
        chunks = iter(source)
        next(chunks)
        cancel.set()
        with pytest.raises(TransferCancelled, match="cancelled"):
            next(chunks)


def test_a_source_is_read_once(image: tuple[Path, bytes]) -> None:
    path, _ = image
    with open_source(str(path)) as source:
        list(source)
        with pytest.raises(RuntimeError, match="one-shot"):
            iter(source)


def test_as_stream(image: tuple[Path, bytes]) -> None:
    path, data = image
    with open_source(str(path), chunk_size=1000) as source:
        stream = source.as_stream()
        assert stream.read(1500) == data[:1500]
        assert stream.read() == data[1500:]


class _Writer(threading.Thread):
    """Writes ``data`` into a FIFO and closes it (opening blocks until a reader is there)."""

    def __init__(self, fifo: Path, data: bytes) -> None:
        super().__init__(daemon=True)
        self.fifo, self.data = fifo, data

    def run(self) -> None:
        with self.fifo.open("wb") as out:
            out.write(self.data)


def _opened_in_time(fifo: Path, **kwargs: object) -> BaseException | None:
    """Open ``fifo`` as a source in a thread; what it raised, or fail if it hangs.

    Guard only: without the fix the open blocks for ever, and this test must
    fail rather than hang. Opening the write end releases the stuck reader.
    """
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            open_source(str(fifo), **kwargs).close()  # type: ignore[arg-type]
            outcome.append(None)
        except BaseException as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"opening a FIFO with no writer blocked: {outcome}")
    return outcome[0]


def test_named_pipe_is_read_forward_without_seeking(tmp_path: Path) -> None:
    """Issue 15 item 4: a FIFO source used to die in lseek (ESPIPE) right after opening."""
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    data = os.urandom(3 << 20)
    writer = _Writer(fifo, data)
    writer.start()
    with open_source(str(fifo), chunk_size=65536) as source:
        assert source.size is None
        assert b"".join(source) == data
    writer.join(10)


def test_named_pipe_read_into_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    data = os.urandom(1 << 20)
    _Writer(fifo, data).start()
    with open_source(str(fifo)) as source:
        buffer = bytearray(len(data) + 10)
        assert source.readinto(buffer) == len(data)  # blocking reads: no EAGAIN, no short read
    assert bytes(buffer[: len(data)]) == data


def test_anonymous_pipe_through_dev_fd() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"from a pipe")
        os.close(write_end)
        with open_source(f"/dev/fd/{read_end}") as source:
            assert b"".join(source) == b"from a pipe"
    finally:
        os.close(read_end)


def test_named_pipe_without_a_writer_times_out_clearly(tmp_path: Path) -> None:
    """Issue 15 item 4: opening a FIFO nobody writes to used to block for ever."""
    fifo = tmp_path / "nobody.fifo"
    os.mkfifo(fifo)
    error = _opened_in_time(fifo, open_timeout=0.2)
    assert isinstance(error, TransferError)
    assert str(error) == (f"source {fifo} is a named pipe and no writer sent anything within 0.2 s")


def test_waiting_for_a_writer_can_be_cancelled(tmp_path: Path) -> None:
    fifo = tmp_path / "nobody.fifo"
    os.mkfifo(fifo)
    cancel = threading.Event()
    cancel.set()
    assert isinstance(_opened_in_time(fifo, cancel=cancel), TransferCancelled)


# -- opened at an offset (a resumed install) ------------------------------------------------


def test_opened_at_an_offset_a_file_starts_there(image: tuple[Path, bytes]) -> None:
    path, data = image
    with open_source(str(path), offset=65536, chunk_size=10_000) as source:
        assert (source.start, source.size, source.validator) == (65536, len(data), None)
        assert b"".join(source) == data[65536:]
        assert source.received == len(data) - 65536
    with open_source(str(path), offset=len(data)) as source:
        assert b"".join(source) == b""


def test_an_offset_past_the_end_is_refused(image: tuple[Path, bytes]) -> None:
    path, data = image
    with pytest.raises(ResumeRefused, match=f"is {len(data)} bytes: it cannot continue at byte"):
        open_source(str(path), offset=len(data) + 1)


def test_a_named_pipe_refuses_an_offset_without_being_opened(tmp_path: Path) -> None:
    """No writer is waiting here: opening would block, so a refusal proves it never opened."""
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    error = _opened_in_time(fifo, offset=4096, open_timeout=30)
    assert isinstance(error, ResumeRefused)
    assert str(error) == f"source {fifo} cannot seek (a pipe or character device): " + (
        "it cannot continue at byte 4096"
    )


def test_an_anonymous_pipe_refuses_an_offset() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(ResumeRefused, match="cannot seek"):
            open_source(f"/dev/fd/{read_end}", offset=1)
    finally:
        os.close(read_end)
        os.close(write_end)
