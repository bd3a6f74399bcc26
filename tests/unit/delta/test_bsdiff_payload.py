"""BSDIFF payloads: round trip, and hostile control streams stopped before the C patcher."""

from __future__ import annotations

import struct

import bsdiff4.core
import pytest

from redstone_agent.delta.bsdiff_make import bsdiff_streams, make_payload
from redstone_agent.delta.bsdiff_payload import apply_payload
from redstone_agent.delta.codecs import compress, smallest
from redstone_agent.delta.errors import DeltaFormatError
from redstone_agent.delta.format import Codec

from .conftest import code_like

OLD = code_like(7, 20_000)
NEW = OLD[:5000] + b"inserted!" + OLD[5000:15000] + OLD[16000:]


def _offtin(value: int) -> bytes:
    return struct.pack("<Q", -value | (1 << 63) if value < 0 else value)


def _payload(control: list[tuple[int, int, int]], diff: bytes, extra: bytes) -> bytes:
    raw = b"".join(_offtin(x) + _offtin(y) + _offtin(z) for x, y, z in control)
    sizes = struct.pack("<III", len(control), len(diff), len(extra))
    return sizes + compress(Codec.ZSTD, raw + diff + extra)


def test_round_trip() -> None:
    payload = make_payload(OLD, NEW)
    assert len(payload.data) < len(NEW) // 10
    assert apply_payload(OLD, payload.data, payload.codec, len(NEW), "t") == NEW


def test_streams_are_bsdiffs_own() -> None:
    """detools' matcher gives bsdiff's streams: bsdiff4's C patcher rebuilds the target from
    them, moved blocks seek backwards, and the patch is as small as bsdiff4's own diff."""
    moved = OLD[12_000:16_000] + OLD[:12_000] + b"new code" + OLD[16_000:]
    control, diff, extra = bsdiff_streams(OLD, moved)
    assert bsdiff4.core.patch(OLD, len(moved), control, diff, extra) == moved
    seeks = [z for _, _, z in struct.iter_unpack("<QQQ", control)]
    assert any(z & (1 << 63) for z in seeks)  # a backward seek, in sign-and-magnitude
    ours = make_payload(OLD, moved)
    theirs = smallest(b"".join(bsdiff4.core.diff(OLD, moved)))[1]
    assert len(ours.data) <= len(theirs) * 1.05 + 16
    assert apply_payload(OLD, ours.data, ours.codec, len(moved), "t") == moved


def test_handmade_payload_applies() -> None:
    diff = bytes(100)
    payload = _payload([(100, 4, 50), (0, 0, 0)], diff, b"abcd")
    assert apply_payload(OLD, payload, Codec.ZSTD, 104, "t") == OLD[:100] + b"abcd"


@pytest.mark.parametrize(
    ("control", "diff", "extra", "target", "message"),
    [
        ([(-5, 0, 0)], b"", b"", 0, "negative length"),
        ([(0, -1, 0)], b"", b"", 0, "negative length"),
        ([(200, 0, 0)], bytes(100), b"", 100, "overruns"),
        ([(50, 0, 0)], bytes(100), b"", 100, "leaves data unused"),
        ([(100, 0, -1000)], bytes(100), b"", 100, "seeks outside"),
        ([(100, 0, 1 << 40)], bytes(100), b"", 100, "seeks outside"),
        ([(0, 0, 19_990), (100, 0, 0)], bytes(100), b"", 100, "reads past the source"),
        ([(100, 0, 0)], bytes(100), b"", 101, "the operation produces 101"),
        ([(0, 0, 0)] * 200, b"", bytes(10), 10, "too many"),
    ],
)
def test_hostile_control_rejected(
    control: list[tuple[int, int, int]], diff: bytes, extra: bytes, target: int, message: str
) -> None:
    with pytest.raises(DeltaFormatError, match=message):
        apply_payload(OLD, _payload(control, diff, extra), Codec.ZSTD, target, "t")


def test_short_payload_rejected() -> None:
    with pytest.raises(DeltaFormatError, match="shorter than its header"):
        apply_payload(OLD, b"\x01\x00", Codec.NONE, 10, "t")


def test_body_shorter_than_announced_rejected() -> None:
    payload = struct.pack("<III", 1, 100, 0) + bytes(50)
    with pytest.raises(DeltaFormatError, match="decompresses to"):
        apply_payload(OLD, payload, Codec.NONE, 100, "t")
