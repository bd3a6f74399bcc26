"""Range header parsing (RFC 9110), table-driven."""

from __future__ import annotations

import pytest

from redstone_cloud.errors import RangeNotSatisfiable
from redstone_cloud.ranges import ByteRange, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 0, 100)),
        ("bytes=0-99", ByteRange(0, 99, 100)),
        ("bytes=90-200", ByteRange(90, 99, 100)),
        ("bytes=90-", ByteRange(90, 99, 100)),
        ("bytes=-10", ByteRange(90, 99, 100)),
        ("bytes=-1000", ByteRange(0, 99, 100)),
        (" bytes = 5 - 6 ", ByteRange(5, 6, 100)),
        ("bytes=6-5", None),
        ("bytes=0-1,3-4", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("bytes=1-2-3", None),
        ("lines=1-2", None),
        ("bytes=+1-2", None),
        ("bytes", None),
    ],
)
def test_parse(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    ("header", "length"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=-5", 0), ("bytes=0-", 0)]
)
def test_unsatisfiable(header: str, length: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, length)
    assert caught.value.length == length
    assert caught.value.status == 416


def test_content_range() -> None:
    assert ByteRange(5, 9, 10).content_range() == "bytes 5-9/10"
    assert ByteRange(5, 9, 10).size == 5
