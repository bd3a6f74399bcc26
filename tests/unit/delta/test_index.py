"""The anchor index finds moved data and chooses source extents within budget."""

from __future__ import annotations

import pytest

from redstone_agent.delta.format import Extent
from redstone_agent.delta.index import (
    Region,
    SourceIndex,
    candidate_regions,
    choose_extents,
    density_bits,
)

from .conftest import random_bytes


def _index(data: bytes) -> SourceIndex:
    return SourceIndex.build(lambda offset, length: data[offset : offset + length], len(data))


def test_density_adapts_to_source_size() -> None:
    assert density_bits(1 << 20) == 5
    assert density_bits(1 << 30) == 7
    assert density_bits(1 << 40) == 14


def test_moved_block_is_found_where_it_went() -> None:
    source = random_bytes(1, 3 << 20)
    block = source[2_000_123 : 2_000_123 + 65536]
    regions = candidate_regions(_index(source), block)
    assert regions[0].diagonal == 2_000_123
    assert regions[0].extent.offset <= 2_000_123
    assert regions[0].extent.end >= 2_000_123 + 65536


def test_block_made_of_two_places_yields_both() -> None:
    source = random_bytes(2, 2 << 20)
    block = source[100_000:130_000] + source[1_500_000:1_530_000]
    regions = candidate_regions(_index(source), block)
    diagonals = {r.diagonal for r in regions}
    assert {100_000, 1_500_000 - 30_000} <= diagonals


def test_index_spans_chunk_boundaries() -> None:
    source = random_bytes(3, 9 << 20)
    block = source[(4 << 20) - 5000 : (4 << 20) + 5000]
    assert candidate_regions(_index(source), block)[0].diagonal == (4 << 20) - 5000


def test_repeated_content_is_not_indexed() -> None:
    source = b"0123456789abcdef" * 65536
    index = _index(source)
    assert len(index.keys) == 0
    assert candidate_regions(index, source[:4096]) == []


def test_unrelated_block_has_no_regions() -> None:
    assert candidate_regions(_index(random_bytes(4, 1 << 20)), random_bytes(5, 65536)) == []


def _region(offset: int, length: int, votes: int) -> Region:
    return Region(Extent(offset, length), votes, offset)


@pytest.mark.parametrize(
    ("regions", "budget", "expected"),
    [
        ([_region(0, 100, 9), _region(1000, 100, 5)], 1000, [Extent(0, 100), Extent(1000, 100)]),
        ([_region(1000, 100, 9), _region(0, 100, 5)], 150, [Extent(0, 50), Extent(1000, 100)]),
        ([_region(0, 100, 9), _region(50, 100, 5)], 1000, [Extent(0, 150)]),
        ([_region(0, 100, 9), _region(150, 100, 5)], 300, [Extent(0, 250)]),
        ([_region(0, 500, 9)], 200, [Extent(0, 200)]),
    ],
)
def test_choose_extents(regions: list[Region], budget: int, expected: list[Extent]) -> None:
    assert choose_extents(regions, budget, 16) == expected
    assert sum(e.length for e in expected) <= budget


def test_choose_extents_caps_count() -> None:
    regions = [_region(i * 1000, 10, 100 - i) for i in range(40)]
    assert len(choose_extents(regions, 1 << 20, 16)) <= 16
