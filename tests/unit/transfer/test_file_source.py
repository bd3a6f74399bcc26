"""Local sources: paths, file:// URLs, devices, caps, cancellation."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from redstone_agent.transfer import (
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
