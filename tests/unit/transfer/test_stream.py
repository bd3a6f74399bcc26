"""ChunkStream: file-like reads over chunk boundaries."""

from __future__ import annotations

from redstone_agent.transfer import ChunkStream


def test_reads_across_chunk_boundaries_and_skips_empty_chunks() -> None:
    stream = ChunkStream([b"ab", b"", b"cdef", b"g"])
    assert stream.read(3) == b"abc"
    assert stream.tell() == 3
    assert stream.read(100) == b"defg"
    assert stream.read(5) == b""
    assert stream.read() == b""


def test_readall_and_readinto() -> None:
    stream = ChunkStream(iter([b"x" * 10, b"y" * 5]))
    buffer = bytearray(4)
    assert stream.readinto(buffer) == 4
    assert bytes(buffer) == b"xxxx"
    assert stream.readall() == b"x" * 6 + b"y" * 5
    assert stream.readable()
    assert not stream.seekable()
