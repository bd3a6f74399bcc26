"""Find where a new block's bytes live in the source: a sparse anchor index (numpy).

Anchors are content-defined: position i is an anchor when a hash of the 8
bytes at i has a given top-bit pattern, so the same bytes are anchors in the
source and in the new image wherever they moved. Each anchor's key is a hash
of the 32 bytes starting there. The index keeps (key, source offset) pairs,
sorted, with only a bounded number of offsets per key (repeated padding or
tables would otherwise swamp it), and its density adapts so that a 1 GiB
source needs about 128 MiB of index. Matching a block votes for the source
regions that its anchors point into; the heaviest regions become the source
extents a BSDIFF operation diffs against.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from redstone_agent.delta.format import Extent

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

KEY_SPAN = 32
_MIX = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
    np.uint64(0x27D4EB2F165667C5),
)
_MAX_ANCHORS = 8 << 20
_MAX_OFFSETS_PER_KEY = 4
_MIN_BITS, _MAX_BITS = 5, 14
_CHUNK = 4 << 20


def density_bits(source_size: int) -> int:
    """One anchor per 2**bits bytes, so that the index stays within _MAX_ANCHORS entries."""
    bits = (max(1, -(-source_size // _MAX_ANCHORS)) - 1).bit_length()
    return min(_MAX_BITS, max(_MIN_BITS, bits))


def _words(data: bytes) -> U64:
    """The little-endian 64-bit word starting at every offset of ``data``."""
    count = len(data) - 7
    words = np.empty(max(count, 0), dtype=np.uint64)
    for shift in range(min(8, max(count, 0))):
        lane = np.frombuffer(data, dtype="<u8", count=(len(data) - shift) // 8, offset=shift)
        words[shift::8] = lane
    return words


def anchors(data: bytes, bits: int) -> tuple[U64, I64]:
    """Keys and offsets of the anchors in ``data`` (only anchors whose 32 bytes fit)."""
    if len(data) < KEY_SPAN:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    words = _words(data)
    usable = len(data) - KEY_SPAN + 1
    hashed = words[:usable] * _MIX[0]
    selected = (hashed >> np.uint64(64 - bits)) == np.uint64(1)
    offsets = np.flatnonzero(selected).astype(np.int64)
    keys = hashed[offsets]
    for lane in (1, 2, 3):
        keys = keys ^ (words[offsets + 8 * lane] * _MIX[lane])
    keys = (keys ^ (keys >> np.uint64(29))) * _MIX[1]
    return keys, offsets


def _drop_frequent(keys: U64, offsets: I64) -> tuple[U64, I64]:
    """Sort by key and keep only keys seen at most _MAX_OFFSETS_PER_KEY times."""
    order = np.argsort(keys, kind="stable")
    keys, offsets = keys[order], offsets[order]
    _, counts = np.unique(keys, return_counts=True)
    keep = np.repeat(counts <= _MAX_OFFSETS_PER_KEY, counts)
    return keys[keep], offsets[keep]


@dataclass(frozen=True)
class SourceIndex:
    """Sorted anchor keys of the source and where each occurs."""

    keys: U64
    offsets: I64
    bits: int
    source_size: int

    @classmethod
    def build(cls, read: Callable[[int, int], bytes], source_size: int) -> SourceIndex:
        """Index a source read through ``read(offset, length)`` in 4 MiB chunks."""
        bits = density_bits(source_size)
        key_parts: list[U64] = []
        offset_parts: list[I64] = []
        for start in range(0, source_size, _CHUNK):
            chunk = read(start, min(_CHUNK + KEY_SPAN - 1, source_size - start))
            keys, offsets = anchors(chunk, bits)
            inside = offsets < _CHUNK
            keys, offsets = _drop_frequent(keys[inside], offsets[inside] + start)
            key_parts.append(keys)
            offset_parts.append(offsets)
        if not key_parts:
            return cls(np.empty(0, np.uint64), np.empty(0, np.int64), bits, source_size)
        keys, offsets = _drop_frequent(np.concatenate(key_parts), np.concatenate(offset_parts))
        return cls(keys, offsets, bits, source_size)

    def matches(self, block: bytes) -> tuple[I64, I64]:
        """Pairs (offset in block, offset in source) whose 32-byte keys agree."""
        keys, block_offsets = anchors(block, self.bits)
        left = np.searchsorted(self.keys, keys, side="left")
        right = np.searchsorted(self.keys, keys, side="right")
        counts = right - left
        hit = counts > 0
        if not hit.any():
            return np.empty(0, np.int64), np.empty(0, np.int64)
        counts, left, block_offsets = counts[hit], left[hit], block_offsets[hit]
        firsts = np.repeat(left - np.cumsum(counts) + counts, counts)
        positions = firsts + np.arange(int(counts.sum()))
        return np.repeat(block_offsets, counts), self.offsets[positions]


@dataclass(frozen=True)
class Region:
    """A source region a block's anchors point into, and how many anchors do."""

    extent: Extent
    votes: int
    diagonal: int


def candidate_regions(
    index: SourceIndex, block: bytes, *, gap: int = 1 << 16, pad: int = 1 << 16
) -> list[Region]:
    """Source regions for ``block``, heaviest first.

    Anchor hits sorted by source offset are split where consecutive hits are
    more than ``gap`` apart; each group becomes a region spanning its hits,
    widened by the block bytes before its first and after its last hit (at
    most ``pad`` each side) so that edits at the block's edges are covered.
    Regions with a single vote are noise and dropped. The heaviest region
    also covers the whole block along its dominant alignment: tables whose
    every entry changed (relocations, symbol addresses) have no exact
    32-byte matches but diff to almost nothing against their old place.
    """
    in_block, in_source = index.matches(block)
    if len(in_source) == 0:
        return []
    order = np.argsort(in_source, kind="stable")
    in_block, in_source = in_block[order], in_source[order]
    breaks = np.flatnonzero(np.diff(in_source) > gap) + 1
    regions = []
    for r, s in zip(np.split(in_block, breaks), np.split(in_source, breaks), strict=True):
        if len(s) < 2:
            continue
        diagonals = s - r
        lo = max(0, int(s[0]) - min(pad, int(r.min())))
        hi = min(index.source_size, int(s[-1]) + KEY_SPAN + min(pad, len(block) - int(r.max())))
        values, counts = np.unique(diagonals, return_counts=True)
        regions.append(Region(Extent(lo, hi - lo), len(s), int(values[np.argmax(counts)])))
    regions.sort(key=lambda region: region.votes, reverse=True)
    if regions:
        regions[0] = _cover_block(regions[0], len(block), index.source_size)
    return regions


def _cover_block(region: Region, block_length: int, source_size: int) -> Region:
    lo = max(0, min(region.extent.offset, region.diagonal))
    hi = min(source_size, max(region.extent.end, region.diagonal + block_length))
    return Region(Extent(lo, hi - lo), region.votes, region.diagonal)


def choose_extents(regions: list[Region], budget: int, max_extents: int) -> list[Extent]:
    """The heaviest regions that fit ``budget`` bytes, merged and in source order."""
    chosen: list[Extent] = []
    used = 0
    for region in regions:
        extent = region.extent
        if extent.length > budget - used:
            extent = _shrink_around(region, budget - used)
            if extent.length <= 0:
                continue
        chosen.append(extent)
        used += extent.length
        if len(chosen) == max_extents:
            break
    return _bridge(_merge(chosen), budget - used)


def _shrink_around(region: Region, room: int) -> Extent:
    """Cut a region to ``room`` bytes, keeping the part its best diagonal points at."""
    start = min(max(region.extent.offset, region.diagonal), region.extent.end - room)
    start = max(start, region.extent.offset)
    return Extent(start, min(room, region.extent.end - start))


def _bridge(extents: list[Extent], room: int) -> list[Extent]:
    """Spend leftover budget closing the smallest gaps between chosen extents.

    Data between two matched places usually belongs to the block too (a table
    whose entries all changed sits between code that moved unchanged).
    """
    gaps = sorted((b.offset - a.end, a.end) for a, b in itertools.pairwise(extents))
    fills = []
    for size, start in gaps:
        if size > room:
            break
        fills.append(Extent(start, size))
        room -= size
    return _merge(extents + fills)


def _merge(extents: list[Extent]) -> list[Extent]:
    merged: list[Extent] = []
    for extent in sorted(extents, key=lambda e: e.offset):
        if merged and extent.offset <= merged[-1].end:
            last = merged.pop()
            end = max(last.end, extent.end)
            merged.append(Extent(last.offset, end - last.offset))
        else:
            merged.append(extent)
    return merged
