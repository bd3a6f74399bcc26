"""Resume rules, table-driven."""

from __future__ import annotations

import pytest

from redstone_agent.transfer.ranges import (
    ContentRange,
    check_resumed_range,
    parse_content_range,
    parse_length,
    resume_validator,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 100-199/200", ContentRange(100, 199, 200)),
        ("bytes 0-0/*", ContentRange(0, 0, None)),
        ("BYTES 5-9/10", ContentRange(5, 9, 10)),
        (None, None),
        ("bytes */200", None),
        ("bytes 10-5/200", None),
        ("bytes 0-200/200", None),
        ("items 0-1/2", None),
        ("bytes 1-2/3 junk", None),
    ],
)
def test_parse_content_range(header: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"), [("123", 123), (" 0 ", 0), ("-1", None), ("1e3", None), (None, None)]
)
def test_parse_length(header: str | None, expected: int | None) -> None:
    assert parse_length(header) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"ETag": '"abc"', "Last-Modified": "Mon"}, '"abc"'),
        ({"ETag": 'W/"abc"', "Last-Modified": "Mon"}, "Mon"),
        ({"ETag": 'W/"abc"'}, None),
        ({}, None),
    ],
)
def test_resume_validator_prefers_a_strong_etag(
    headers: dict[str, str], expected: str | None
) -> None:
    assert resume_validator(headers) == expected


@pytest.mark.parametrize(
    ("offset", "size", "content_range", "problem"),
    [
        (100, 200, ContentRange(100, 199, 200), None),
        (100, None, ContentRange(100, 199, 200), None),
        (100, 200, ContentRange(100, 199, None), None),
        (100, 200, None, "without a valid Content-Range"),
        (100, 200, ContentRange(0, 199, 200), "server sent from 0"),
        (100, 200, ContentRange(100, 299, 300), "size changed from 200 to 300"),
    ],
)
def test_check_resumed_range(
    offset: int, size: int | None, content_range: ContentRange | None, problem: str | None
) -> None:
    found = check_resumed_range(offset, size, content_range)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
