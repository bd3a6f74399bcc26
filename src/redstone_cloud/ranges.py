"""HTTP ``Range`` handling for target downloads (RFC 9110 section 14), pure.

Only single ranges are honoured; a syntactically invalid or multi-range header
is ignored (the whole object is sent), which RFC 9110 permits and every
resuming client handles.
"""

from __future__ import annotations

from dataclasses import dataclass

from redstone_cloud.errors import RangeNotSatisfiable


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte range ``start..end`` of an object of ``length`` bytes."""

    start: int
    end: int
    length: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.length}"


def parse_range(header: str | None, length: int) -> ByteRange | None:
    """The range to send, None for the whole object; raises if nothing can be sent."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = (part.strip() for part in spec.partition("-"))
    if not dash or not (first or last) or not all(p.isdigit() for p in (first, last) if p):
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or length == 0:
            raise RangeNotSatisfiable(f"range {header!r} selects nothing of {length} bytes", length)
        return ByteRange(max(0, length - suffix), length - 1, length)
    start = int(first)
    if start >= length:
        raise RangeNotSatisfiable(
            f"range {header!r} starts beyond the {length}-byte object", length
        )
    end = int(last) if last else length - 1
    if end < start:
        return None
    return ByteRange(start, min(end, length - 1), length)
