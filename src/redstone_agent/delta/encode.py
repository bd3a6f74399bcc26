"""Turn one block of the new image into the cheapest verified operation.

Order of preference: ZERO, an exact COPY, then the smallest of BSDIFF
(against the source regions the anchor index points at), REPLACE, and,
when bsdiff did poorly (a rebuilt rather than patched block), ZSTD_PATCH:
zstd with the same source regions as its dictionary. Every
BSDIFF payload is decoded again with the apply-side code before it is
accepted, so make never emits an operation apply would refuse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from redstone_agent.delta.bsdiff_make import make_payload
from redstone_agent.delta.bsdiff_payload import apply_payload
from redstone_agent.delta.codecs import compress_zstd, smallest
from redstone_agent.delta.errors import DeltaError
from redstone_agent.delta.format import (
    MAX_EXTENTS,
    Codec,
    Extent,
    OpHeader,
    OpKind,
    encode_op,
)
from redstone_agent.delta.index import SourceIndex, candidate_regions, choose_extents

ReadSource = Callable[[int, int], bytes]

#: Skip REPLACE when bsdiff already shrank the block below this fraction.
_GOOD_BSDIFF = 1 / 16
#: Try ZSTD_PATCH only when the best so far is above this fraction of the block.
_POOR_DIFF = 1 / 8


@dataclass(frozen=True)
class EncodedOp:
    """An operation record with its payload, ready to append to the delta."""

    kind: OpKind
    data: bytes


def encode_block(
    block: bytes, index: SourceIndex, read_source: ReadSource, source_budget: int
) -> EncodedOp:
    """The smallest operation that rebuilds ``block`` from the source."""
    digest = hashlib.sha256(block).digest()
    if block.count(0) == len(block):
        return _record(OpHeader(OpKind.ZERO, Codec.NONE, len(block), 0, digest))
    regions = candidate_regions(index, block)
    copy = _exact_copy(block, [r.diagonal for r in regions[:4]], index.source_size, read_source)
    if copy is not None:
        return _record(OpHeader(OpKind.COPY, Codec.NONE, len(block), 0, digest, (copy,)))
    best: OpHeader | None = None
    payload = b""
    extents = choose_extents(regions, source_budget, MAX_EXTENTS)
    old = b"".join(read_source(e.offset, e.length) for e in extents)
    if old:
        bsdiff = make_payload(old, block)
        if len(bsdiff.data) < len(block) and _decodes(old, bsdiff.data, bsdiff.codec, block):
            best = OpHeader(
                OpKind.BSDIFF, bsdiff.codec, len(block), len(bsdiff.data), digest, tuple(extents)
            )
            payload = bsdiff.data
    if best is None or len(payload) > len(block) * _GOOD_BSDIFF:
        codec, packed = smallest(block)
        if best is None or len(packed) < len(payload):
            best = OpHeader(OpKind.REPLACE, codec, len(block), len(packed), digest)
            payload = packed
    if old and len(payload) > len(block) * _POOR_DIFF:
        patched = compress_zstd(block, dictionary=old)
        if len(patched) < len(payload):
            best = OpHeader(
                OpKind.ZSTD_PATCH, Codec.ZSTD, len(block), len(patched), digest, tuple(extents)
            )
            payload = patched
    return _record(best, payload)


def _record(op: OpHeader, payload: bytes = b"") -> EncodedOp:
    return EncodedOp(op.kind, encode_op(op) + payload)


def _exact_copy(
    block: bytes, diagonals: list[int], source_size: int, read_source: ReadSource
) -> Extent | None:
    """A source extent equal to ``block`` at one of the likeliest alignments, if any."""
    for offset in dict.fromkeys(diagonals):
        fits = offset >= 0 and offset + len(block) <= source_size
        if fits and read_source(offset, len(block)) == block:
            return Extent(offset, len(block))
    return None


def _decodes(old: bytes, payload: bytes, codec: Codec, block: bytes) -> bool:
    try:
        return apply_payload(old, payload, codec, len(block), "self-check") == block
    except DeltaError:
        return False
