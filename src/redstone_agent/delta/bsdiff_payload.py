"""BSDIFF operation payloads: bsdiff's control/diff/extra streams in one compressed body.

bsdiff4's own file format bz2-compresses the three streams separately and
decodes them without any size limit. Here the three streams are stored as
one body compressed with zstd or xz (smaller, and decoding is ~10x faster
than bz2), behind a 12-byte clear header that fixes every size up front, and
the control records are validated before bsdiff4's C patcher sees them.
Making the streams is :mod:`redstone_agent.delta.bsdiff_make` (build hosts only).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bsdiff4 import core as bsdiff_core

from redstone_agent.delta.codecs import decompress, smallest
from redstone_agent.delta.errors import DeltaFormatError
from redstone_agent.delta.format import Codec

_SIZES = struct.Struct("<III")
_CONTROL = struct.Struct("<QQQ")
CONTROL_RECORD = _CONTROL.size
_SIGN = 1 << 63


def max_control_records(target_length: int) -> int:
    """The most control records an operation producing ``target_length`` bytes may carry."""
    return target_length // 8 + 64


@dataclass(frozen=True)
class BsdiffPayload:
    """An encoded BSDIFF payload and the codec of its body."""

    codec: Codec
    data: bytes


_XZ_ONLY_FROM = 64 << 10
"""Bodies this large are packed with xz alone: on every large body measured xz was 5-15 %
smaller than zstd -19, and trying both cost a fifth of make's time. Smaller bodies (a
small image, the last block) try both: xz's container costs ~60 bytes there."""


def pack_payload(control: bytes, diff: bytes, extra: bytes) -> BsdiffPayload:
    """bsdiff's three streams as one payload, compressed as small as the codecs allow."""
    count = len(control) // CONTROL_RECORD
    body = control + diff + extra
    codecs = (Codec.XZ,) if len(body) >= _XZ_ONLY_FROM else (Codec.ZSTD, Codec.XZ)
    codec, body = smallest(body, codecs)
    return BsdiffPayload(codec, _SIZES.pack(count, len(diff), len(extra)) + body)


def control_record(diff_length: int, extra_length: int, seek: int) -> bytes:
    """One control record, integers in bsdiff's sign-and-magnitude form."""
    return _CONTROL.pack(diff_length, extra_length, -seek | _SIGN if seek < 0 else seek)


def apply_payload(
    old: bytes, payload: bytes, codec: Codec, target_length: int, where: str
) -> bytes:
    """Rebuild ``target_length`` bytes from ``old`` and a payload, validating it completely."""
    if len(payload) < _SIZES.size:
        raise DeltaFormatError(f"{where}: bsdiff payload shorter than its header")
    count, diff_length, extra_length = _SIZES.unpack_from(payload)
    if count > max_control_records(target_length):
        raise DeltaFormatError(f"{where}: {count} bsdiff control records is too many")
    if diff_length + extra_length != target_length:
        raise DeltaFormatError(
            f"{where}: bsdiff streams hold {diff_length}+{extra_length} bytes, "
            f"the operation produces {target_length}"
        )
    control_length = count * CONTROL_RECORD
    body = decompress(
        codec, payload[_SIZES.size :], control_length + diff_length + extra_length, where
    )
    control = body[:control_length]
    _check_control(control, len(old), diff_length, extra_length, where)
    diff = body[control_length : control_length + diff_length]
    extra = body[control_length + diff_length :]
    result: bytes = bsdiff_core.patch(old, target_length, control, diff, extra)
    return result


def _signed(value: int) -> int:
    """bsdiff stores integers as sign and magnitude, not two's complement."""
    return -(value & ~_SIGN) if value & _SIGN else value


def _check_control(
    control: bytes, old_length: int, diff_length: int, extra_length: int, where: str
) -> None:
    """Every copy stays inside old, diff and extra; together they cover the output exactly."""
    old_pos = diff_used = extra_used = 0
    for raw_x, raw_y, raw_z in _CONTROL.iter_unpack(control):
        x, y, z = _signed(raw_x), _signed(raw_y), _signed(raw_z)
        if x < 0 or y < 0:
            raise DeltaFormatError(f"{where}: negative length in bsdiff control")
        diff_used += x
        extra_used += y
        if diff_used > diff_length or extra_used > extra_length:
            raise DeltaFormatError(f"{where}: bsdiff control overruns its data")
        if old_pos + x > old_length:
            raise DeltaFormatError(f"{where}: bsdiff control reads past the source")
        old_pos += x + z
        if not 0 <= old_pos <= old_length:
            raise DeltaFormatError(f"{where}: bsdiff control seeks outside the source")
    if diff_used != diff_length or extra_used != extra_length:
        raise DeltaFormatError(f"{where}: bsdiff control leaves data unused")
