"""HTTP ``Range`` handling for target downloads (RFC 9110 section 14), pure.

Only single ranges are honoured; a syntactically invalid or multi-range header
is ignored (the whole object is sent), which RFC 9110 permits and every
resuming client handles.
"""

from __future__ import annotations

from dataclasses import dataclass

from redstone_cloud.errors import RangeNotSatisfiable
from redstone_cloud.inputs import ascii_int


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
    # ASCII digits only (str.isdigit takes '²' and '٣'); absurdly long numbers saturate.
    start, end = ascii_int(first), ascii_int(last)
    if not dash or not (first or last) or (first and start is None) or (last and end is None):
        return None
    shown = header if len(header) <= 64 else header[:60] + "..."
    if start is None:  # suffix: the last N bytes
        assert end is not None
        if end == 0 or length == 0:
            raise RangeNotSatisfiable(f"range {shown!r} selects nothing of {length} bytes", length)
        return ByteRange(max(0, length - end), length - 1, length)
    if start >= length:
        raise RangeNotSatisfiable(f"range {shown!r} starts beyond the {length}-byte object", length)
    end = length - 1 if end is None else end
    if end < start:
        return None
    return ByteRange(start, min(end, length - 1), length)
