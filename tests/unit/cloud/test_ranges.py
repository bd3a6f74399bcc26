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


@pytest.mark.parametrize(
    "header",
    [
        "bytes=\u0661\u0662-\u0663",  # Arabic-Indic digits: isdigit() is True
        "bytes=\u00b2-\u00b3",  # superscripts: isdigit() is True, int() refuses
        "bytes=-\u00b2",
        "bytes=\uff11-\uff12",  # fullwidth digits
    ],
)
def test_range_with_non_ascii_digits_is_ignored(header: str) -> None:
    assert parse_range(header, 100) is None


def test_range_with_thousands_of_digits_is_never_a_crash() -> None:
    huge = "9" * 5000
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes={huge}-", 100)
    assert parse_range(f"bytes=0-{huge}", 100) == ByteRange(0, 99, 100)
    assert parse_range(f"bytes=-{huge}", 100) == ByteRange(0, 99, 100)
    assert parse_range(f"bytes={'0' * 5000}1-2", 100) == ByteRange(1, 2, 100)
