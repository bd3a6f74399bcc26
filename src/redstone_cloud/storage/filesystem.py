"""Blobs as files under one directory, written crash-safely (tmp, fsync, rename)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from redstone_agent.journal.store import fsync_directory
from redstone_cloud.errors import InvalidInput, NotFound, TooLarge
from redstone_cloud.storage.base import CHUNK, BlobInfo

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class FilesystemStore:
    """The default store: ``root/<key>``; keys are relative paths without ``..``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or any(part in {".", ".."} for part in key.split("/")):
            raise InvalidInput(f"invalid storage key {key!r}")
        return self.root / key

    def put(self, key: str, source: BinaryIO, max_bytes: int) -> BlobInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own per call: two uploads of one key (threads of one process, or
        # several serve processes) never share a temporary file; the last rename wins whole.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o644)
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        length = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    length += len(chunk)
                    if length > max_bytes:
                        raise TooLarge(f"upload exceeds the {max_bytes}-byte limit")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            tmp.rename(path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_directory(path.parent)
        return BlobInfo(key, length, digest.hexdigest())

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key!r} is missing from storage") from exc
        with handle:
            handle.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                chunk = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key!r} is missing from storage") from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def download_url(self, key: str, expires_s: int) -> str | None:
        return None
