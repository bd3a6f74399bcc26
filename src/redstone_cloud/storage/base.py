"""The storage interface the rest of the backend programs against."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

CHUNK = 256 * 1024


@dataclass(frozen=True)
class BlobInfo:
    """What the store measured while writing: the authority for a package's length and hash."""

    key: str
    length: int
    sha256: str


class BlobStore(Protocol):
    """Immutable blobs by key. Writers stream, readers stream byte ranges."""

    def put(self, key: str, source: BinaryIO, max_bytes: int) -> BlobInfo:
        """Store ``source`` under ``key``; raise TooLarge beyond ``max_bytes`` (nothing kept)."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield bytes ``start..end`` (inclusive; None = to the end) in chunks."""
        ...

    def size(self, key: str) -> int:
        """Length of the blob; raise NotFound if absent."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob if present."""
        ...

    def download_url(self, key: str, expires_s: int) -> str | None:
        """A signed URL the device may fetch directly, or None to stream through the API."""
        ...
