"""Pure HTTP resume rules (RFC 9110 §13-14): no sockets, so they test in microseconds."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Statuses that say "try again later" rather than "this will never work"."""


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range: bytes first-last/complete`` header."""

    first: int
    last: int
    complete: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse a satisfied byte range; None when absent or malformed."""
    if value is None:
        return None
    match = _CONTENT_RANGE.match(value)
    if match is None:
        return None
    first, last = int(match[1]), int(match[2])
    if last < first:
        return None
    complete = None if match[3] == "*" else int(match[3])
    if complete is not None and last >= complete:
        return None
    return ContentRange(first, last, complete)


def parse_length(value: str | None) -> int | None:
    """Content-Length as an int; None when absent or not a plain non-negative number."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def resume_validator(headers: Mapping[str, str]) -> str | None:
    """The value to send in ``If-Range``: a strong ETag, else Last-Modified, else None.

    A weak ETag (``W/"..."``) must not be used in If-Range (RFC 9110 §13.1.5).
    """
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def check_resumed_range(
    offset: int, size: int | None, content_range: ContentRange | None
) -> str | None:
    """Why a 206 answer to ``Range: bytes=offset-`` cannot be spliced on, or None if it can."""
    if content_range is None:
        return "206 response without a valid Content-Range"
    if content_range.first != offset:
        return f"asked for bytes from {offset}, server sent from {content_range.first}"
    if size is not None and content_range.complete not in (None, size):
        return f"file size changed from {size} to {content_range.complete} bytes"
    return None
