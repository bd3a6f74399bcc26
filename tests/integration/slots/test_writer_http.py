"""End to end on files: HTTP source (breaking mid-stream) → decompress → SlotWriter."""

from __future__ import annotations

import hashlib
import lzma
import os
from pathlib import Path

import pytest
import zstandard

from redstone_agent.retry import RetryPolicy
from redstone_agent.slots.writer import ImageMismatch, write_image
from redstone_agent.transfer import decompressing, open_source
from tests.integration.transfer.server import Act, Blob, serving

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02, timeout=2.0)
IMAGE = os.urandom(2 << 20) + bytes(2 << 20) + os.urandom(333)
SHA = hashlib.sha256(IMAGE).hexdigest()
CHUNK = 256 << 10


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=1).compress(data)


def xz(data: bytes) -> bytes:
    return lzma.compress(data, preset=0)


def identity(data: bytes) -> bytes:
    return data


@pytest.mark.parametrize("compress", [identity, xz, zstd])
def test_install_survives_two_broken_connections(tmp_path: Path, compress: object) -> None:
    packed = compress(IMAGE)  # type: ignore[operator]
    target = tmp_path / "slot-b.img"
    with serving(Blob(packed)) as (url, plan):
        plan.script = [Act(die_after=len(packed) // 3), Act(die_after=len(packed) // 4)]
        with open_source(url, retry=FAST, chunk_size=65536) as source:
            result = write_image(
                decompressing(source), target, expected_size=len(IMAGE), expected_sha256=SHA,
                chunk_size=CHUNK, verify_readback=True,
            )  # fmt: skip
            assert source.resumed == 2
    assert result.sha256 == SHA
    assert target.read_bytes() == IMAGE


def test_server_lying_short_is_caught_by_the_length_check(tmp_path: Path) -> None:
    with serving(Blob(IMAGE)) as (url, plan):
        plan.script = [Act(claim_length=len(IMAGE) - 4096)]
        with (
            open_source(url, retry=FAST) as source,
            pytest.raises(ImageMismatch, match=f"ended after {len(IMAGE) - 4096} bytes"),
        ):
            write_image(source, tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA)


def test_truncated_zstd_is_caught_by_the_length_check(tmp_path: Path) -> None:
    packed = zstd(IMAGE)[:-50]
    with (
        serving(Blob(packed)) as (url, _),
        open_source(url, retry=FAST) as source,
        pytest.raises(ImageMismatch, match="ended after"),
    ):
        write_image(
            decompressing(source), tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA
        )


def test_different_image_of_the_same_length_is_a_hash_mismatch(tmp_path: Path) -> None:
    other = bytearray(IMAGE)
    other[len(other) // 2] ^= 1
    with (
        serving(Blob(bytes(other))) as (url, _),
        open_source(url, retry=FAST) as source,
        pytest.raises(ImageMismatch, match=f"expected {SHA}"),
    ):
        write_image(source, tmp_path / "slot", expected_size=len(IMAGE), expected_sha256=SHA)
