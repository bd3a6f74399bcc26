"""Byte sources for the installer: local files and resumable HTTP(S), plus decompression.

``open_source`` turns a location into a :class:`ByteSource` that yields the
raw bytes in order, resumes HTTP transfers across broken connections, caps the
size and honours a cancel event; opened at an offset it continues an earlier
transfer (or refuses with ``ResumeRefused``). ``decompressing`` peels off xz
or zstd.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests

from redstone_agent.pace import Pace
from redstone_agent.retry import RetryPolicy
from redstone_agent.transfer.decompress import (
    Decompressed,
    HeadThen,
    decompressing,
    detect,
    peek_into,
)
from redstone_agent.transfer.errors import (
    CorruptSource,
    ResumeRefused,
    SourceChanged,
    SourceTooLarge,
    TransferCancelled,
    TransferError,
)
from redstone_agent.transfer.http import DEFAULT_PACE, DEFAULT_RETRY, HttpSource
from redstone_agent.transfer.source import DEFAULT_OPEN_TIMEOUT, ByteSource, FileSource
from redstone_agent.transfer.stream import ChunkStream

__all__ = [
    "ByteSource",
    "ChunkStream",
    "CorruptSource",
    "Decompressed",
    "FileSource",
    "HeadThen",
    "HttpSource",
    "Pace",
    "ResumeRefused",
    "SourceChanged",
    "SourceTooLarge",
    "TransferCancelled",
    "TransferError",
    "decompressing",
    "detect",
    "local_path",
    "open_source",
    "peek_into",
]


def local_path(location: str) -> Path | None:
    """The filesystem path a location names (plain path or file:// URL), else None."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise TransferError(f"file URL with a remote host is not supported: {location}")
        return Path(url2pathname(unquote(parts.path)))
    if "://" in location:
        return None
    return Path(location)


def open_source(
    location: str,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    cancel: threading.Event | None = None,
    max_bytes: int | None = None,
    chunk_size: int = 1 << 20,
    headers: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
    pace: Pace = DEFAULT_PACE,
    open_timeout: float = DEFAULT_OPEN_TIMEOUT,
    offset: int = 0,
    validator: str | None = None,
) -> ByteSource:
    """Open a local path, file:// URL or http(s):// URL for streaming its raw bytes.

    ``pace`` is the slowest an HTTP transfer may go (minimum rate per window,
    optional total deadline); ``open_timeout`` how long a named pipe may wait
    for its writer. ``offset`` starts at that byte (a resumed transfer): a
    file seeks, HTTP asks for a Range guarded by ``validator`` (the
    ``validator`` an earlier source of the same location reported), and
    whatever cannot continue there — a pipe, a changed or shorter file —
    raises ``ResumeRefused`` before delivering anything.
    """
    path = local_path(location)
    if path is not None:
        return FileSource(
            path,
            cancel=cancel,
            max_bytes=max_bytes,
            chunk_size=chunk_size,
            open_timeout=open_timeout,
            offset=offset,
        )
    scheme = urlsplit(location).scheme.lower()
    if scheme not in ("http", "https"):
        raise TransferError(f"unsupported source scheme {scheme!r} in {location}")
    return HttpSource(
        location,
        retry=retry,
        cancel=cancel,
        max_bytes=max_bytes,
        chunk_size=chunk_size,
        headers=headers,
        session=session,
        pace=pace,
        offset=offset,
        validator=validator,
    )
