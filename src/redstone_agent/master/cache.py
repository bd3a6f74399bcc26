"""The Master's target cache: content-addressed, size-budgeted, crash-safe.

Layout under the cache directory::

    targets/<sha256>                 complete targets, length and hash checked
    metadata/<sha256>                small blobs (the metadata bundle forwarded to Subs)
    partial/<sha256>.part            a target download in progress
    partial/<sha256>.part.offset     its journaled durable offset (uptane.fetcher)

Every name is the sha256 of the bytes, so a file can only be found under the
hash of what it holds, and only ``targets/`` and ``metadata/`` are ever
served to Subs (``cache_server``). A target is downloaded into ``partial/``
and renamed into ``targets/`` only after the cache itself has checked its
length and hash: it trusts no :data:`Fetch`.

The budget is enforced per campaign by :meth:`Cache.reserve`: a campaign
that cannot fit, even after evicting every file no one needs, is refused
before anything is evicted; otherwise the least recently used of those files
(complete or partial) go first, until the whole campaign fits. "Used" is the
access time, which ``reserve`` sets on the files a campaign needs; the
modification time never changes after a file is stored, because the cache
server derives its ETag and Last-Modified from it and a Sub resuming a
download refuses a file whose validator changed.

One download per hash at a time; downloads of different hashes may run in
parallel threads (the daemon runs them with ``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from redstone_agent.journal import atomic_write
from redstone_agent.journal.store import fsync_directory
from redstone_agent.master.errors import CacheError, CacheFull
from redstone_agent.uptane.fetcher import Progress, hash_file

log = logging.getLogger(__name__)

Fetch = Callable[[Path, Progress | None], Path]
"""Downloads one target: ``fetch(dest, progress) -> dest``.

It resumes a partial download kept beside ``dest`` (across restarts), never
writes more than the target's signed length, and gives the file the name
``dest`` only once its length and sha256 match. The Master builds one per
target from the Primary that verified it::

    fetch = functools.partial(primary_verifier.download, verified_target)

(:meth:`redstone_agent.uptane.primary.PrimaryVerifier.download` calls
:func:`redstone_agent.uptane.fetcher.download_target`, which journals the
durable offset so a SIGKILL or power cut resumes by Range.)
"""

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
"""How a cache name looks: a lowercase hex sha256 and nothing else."""

TARGETS = "targets"
METADATA = "metadata"
PARTIAL = "partial"


def is_sha256(name: str) -> bool:
    return SHA256_HEX.fullmatch(name) is not None


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


@dataclass(frozen=True)
class _Entry:
    """The files one hash occupies in one area of the cache."""

    key: str
    area: str
    paths: tuple[Path, ...]
    size: int
    used: float
    """Latest access or modification of its files: when it was last stored, needed or read."""


class Cache:
    """Verified targets and metadata blobs under one directory, within a byte budget."""

    def __init__(self, directory: Path, budget_bytes: int) -> None:
        if budget_bytes <= 0:
            raise CacheError(f"cache budget must be a positive number of bytes, not {budget_bytes}")
        self.directory = Path(directory)
        self.budget = budget_bytes
        self._targets = self.directory / TARGETS
        self._metadata = self.directory / METADATA
        self._partial = self.directory / PARTIAL
        self._lock = threading.Lock()
        for area in (self._targets, self._metadata, self._partial):
            try:
                area.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CacheError(f"cannot create cache directory {area}: {exc.strerror}") from exc

    # -- lookup ---------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the complete, verified target with this hash lives (it may not exist)."""
        return self._targets / _checked(sha256)

    def blob_path(self, sha256: str) -> Path:
        """Where the metadata blob with this hash lives (it may not exist)."""
        return self._metadata / _checked(sha256)

    def has(self, sha256: str, length: int) -> bool:
        """Whether the target is complete here with that length (its hash was checked on entry)."""
        try:
            return self.path(sha256).stat().st_size == length
        except FileNotFoundError:
            return False

    def usage(self) -> int:
        """Bytes held: complete targets, metadata blobs and partial downloads."""
        return sum(entry.size for entry in self._entries())

    # -- budget ---------------------------------------------------------------

    def reserve(self, needed: Mapping[str, int], keep: Collection[str] = ()) -> None:
        """Make room for a campaign's targets (``sha256 -> length``, present ones included).

        Evicts complete and partial files that are neither needed nor in
        ``keep`` (e.g. the metadata blob in use, images kept for rollback),
        least recently used first, until every needed file fits at its full
        length. Raises CacheFull, evicting nothing, when they cannot fit even
        then. Never evicts a needed or kept file.
        """
        for sha256, length in needed.items():
            _checked(sha256)
            if length < 0:
                raise CacheError(f"target {sha256}: negative length {length}")
        keep = set(keep)
        with self._lock:
            entries = list(self._entries())
            covered = [e for e in entries if e.key in needed and e.area != METADATA]
            others = [e for e in entries if e not in covered]
            pinned = [e for e in others if e.key in needed or e.key in keep]
            evictable = sorted(
                (e for e in others if e not in pinned), key=lambda e: (e.used, e.key)
            )
            needed_total = sum(needed.values())
            pinned_total = sum(e.size for e in pinned)
            if needed_total + pinned_total > self.budget:
                held = ""
                if pinned_total:
                    kept = len({e.key for e in pinned})
                    held = f" ({mib(pinned_total)} held by {kept} kept file(s))"
                raise CacheFull(
                    f"campaign needs {mib(needed_total)}, cache budget is {mib(self.budget)}{held}"
                )
            projected = needed_total + sum(e.size for e in others)
            evicted = 0
            for entry in evictable:
                if projected <= self.budget:
                    break
                _remove(entry)
                projected -= entry.size
                evicted += entry.size
                log.debug("evicted %s/%s (%s)", entry.area, entry.key, mib(entry.size))
            for entry in covered:
                _touch(entry)
        if evicted:
            log.info("cache: evicted %s to make room for the campaign", mib(evicted))

    # -- storing --------------------------------------------------------------

    def download(
        self,
        fetch: Fetch,
        sha256: str,
        length: int,
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Return the complete target, downloading (resuming) it through ``fetch`` if needed.

        The download goes to ``partial/`` and the file moves to ``targets/``
        only after its length and sha256 match; a mismatch deletes it and
        raises CacheError. Errors of the fetch (``DownloadError``) pass through.
        """
        final = self.path(sha256)
        if self.has(sha256, length):
            return final
        dest = self._partial / sha256
        projected = self.usage() - self._partial_size(sha256) + length
        if projected > self.budget:
            raise CacheFull(
                f"target {sha256[:16]} ({mib(length)}) does not fit in the cache budget "
                f"of {mib(self.budget)}: reserve() the campaign first"
            )
        try:
            if not _complete(dest, length):
                dest = fetch(dest, progress)
            self._promote(dest, sha256, length)
        except OSError as exc:
            raise CacheError(f"cannot store target {sha256[:16]}: {exc}") from exc
        return final

    def put_blob(self, data: bytes) -> str:
        """Store a small blob (the metadata bundle for Subs) under its sha256 and return it.

        Blobs count towards usage; :meth:`reserve` evicts them like any file
        no one needs, so pass the one in use as ``keep``.
        """
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.blob_path(sha256)
        with self._lock:
            if _complete(path, len(data)):
                _mark_used(path)
            else:
                try:
                    atomic_write(path, data, mode=0o644)
                except OSError as exc:
                    raise CacheError(f"cannot store metadata blob {sha256[:16]}: {exc}") from exc
        return sha256

    # -- internals ------------------------------------------------------------

    def _promote(self, result: Path, sha256: str, length: int) -> None:
        """Check the downloaded file and give it its final name, durably."""
        size, digest = hash_file(result)
        actual = digest.hexdigest()
        if size != length or actual != sha256:
            self._discard_partial(sha256, also=result)
            raise CacheError(
                f"target {sha256[:16]}: downloaded {size} bytes with sha256 {actual[:16]}, "
                f"expected {length} bytes; discarded"
            )
        with self._lock:
            result.replace(self.path(sha256))
            fsync_directory(self._targets)
            fsync_directory(result.parent)

    def _partial_size(self, sha256: str) -> int:
        return sum(e.size for e in self._entries() if e.area == PARTIAL and e.key == sha256)

    def _discard_partial(self, sha256: str, also: Path) -> None:
        also.unlink(missing_ok=True)
        for entry in self._entries():
            if entry.area == PARTIAL and entry.key == sha256:
                _remove(entry)

    def _entries(self) -> Iterator[_Entry]:
        for area in (self._targets, self._metadata, self._partial):
            groups: dict[str, list[tuple[Path, os.stat_result]]] = {}
            try:
                names = list(os.scandir(area))
            except FileNotFoundError:
                continue
            for item in names:
                try:
                    status = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed meanwhile
                # '<sha>.part', '<sha>.part.offset', '.<sha>.<tmp>' all belong to <sha>
                key = item.name.lstrip(".").split(".", 1)[0]
                groups.setdefault(key, []).append((Path(item.path), status))
            for key, files in groups.items():
                yield _Entry(
                    key=key,
                    area=area.name,
                    paths=tuple(p for p, _ in files),
                    size=sum(s.st_size for _, s in files),
                    used=max(max(s.st_atime, s.st_mtime) for _, s in files),
                )


def _checked(sha256: str) -> str:
    if not is_sha256(sha256):
        raise CacheError(f"not a lowercase hex sha256: {sha256[:80]!r}")
    return sha256


def _complete(path: Path, length: int) -> bool:
    try:
        return path.stat().st_size == length
    except FileNotFoundError:
        return False


def _remove(entry: _Entry) -> None:
    for path in entry.paths:
        path.unlink(missing_ok=True)


def _touch(entry: _Entry) -> None:
    for path in entry.paths:
        _mark_used(path)


def _mark_used(path: Path) -> None:
    """Set the access time to now, keeping the modification time the server's ETag is made of."""
    try:
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
    except FileNotFoundError:
        return
