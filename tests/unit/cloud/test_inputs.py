"""Untrusted-input rules: depth, finiteness, text, integers, target names."""

from __future__ import annotations

import pytest

from redstone_cloud.errors import InvalidInput
from redstone_cloud.inputs import (
    MAX_JSON_DEPTH,
    ascii_int,
    check_depth,
    check_target_name,
    parse_json,
)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"detail": {"x": 1e400}}',
        b'{"x": -1e999}',
        b'{"x": NaN}',
        b'{"x": Infinity}',
        b'{"x": "nul\\u0000"}',
        b'{"x": "\\ud800"}',
        b'{"\\ud800": 1}',
        b"\xff\xfe",
        b"",
    ],
)
def test_hostile_json_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_json(data)


def test_depth_limit_counts_only_structure() -> None:
    check_depth(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    check_depth(b'["' + b"[" * 1000 + b'"]')  # brackets inside a string do not nest
    check_depth(b'["\\"[[[[' + b"[" * 1000 + b'"]')
    with pytest.raises(InvalidInput):
        check_depth(b"[" * (MAX_JSON_DEPTH + 1))
    assert parse_json(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("0042", 42), ("9" * 5000, 10**19), ("\u0661", None), ("\u00b2", None), ("", None)],
)
def test_ascii_int(text: str, expected: int | None) -> None:
    assert ascii_int(text) == expected


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "a/../b", "/abs", "dir/name", "back\\slash", "a..b", "..", ".hidden", ""],
)
def test_target_names_with_separators_or_dotdot_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_target_name(name)


def test_ordinary_target_names_pass() -> None:
    for name in ("adas-3.1", "tbox_5.2+build7", "adas-2.0.from-0123456789abcdef.rsdelta"):
        assert check_target_name(name) == name
