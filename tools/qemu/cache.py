"""Build-once artifacts under ``~/.cache/redstone-system``, keyed by their inputs.

An entry is a directory named ``<kind>-<hash of the inputs>``. It is built in a
private temporary directory and renamed into place when complete, so an
interrupted build never leaves a half-made entry and parallel builders (other
engineers, other pytest processes) at worst build the same thing twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

ENV_VAR = "REDSTONE_SYSTEM_CACHE"
KEEP_PER_KIND = 3
"""Entries of one kind kept after a build (most recently used first); inputs move on."""


def cache_root() -> Path:
    """``$REDSTONE_SYSTEM_CACHE`` or ``~/.cache/redstone-system``."""
    configured = os.environ.get(ENV_VAR)
    root = Path(configured) if configured else Path.home() / ".cache" / "redstone-system"
    root.mkdir(parents=True, exist_ok=True)
    return root


def input_key(parts: Iterable[str | bytes | Path]) -> str:
    """A short hash over strings, bytes and file contents, in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            data = part.read_bytes()
        elif isinstance(part, str):
            data = part.encode()
        else:
            data = part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:16]


def cached(kind: str, key: str, build: Callable[[Path], None]) -> Path:
    """The entry ``kind-key``; ``build(directory)`` fills it when it is missing."""
    root = cache_root()
    entry = root / f"{kind}-{key}"
    if entry.is_dir():
        os.utime(entry)
        return entry
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=root))
    try:
        build(staging)
        try:
            staging.rename(entry)
        except OSError:
            if not entry.is_dir():  # not a lost race with another builder
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(root, kind)
    return entry


def _prune(root: Path, kind: str) -> None:
    entries = sorted(root.glob(f"{kind}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[KEEP_PER_KIND:]:
        shutil.rmtree(stale, ignore_errors=True)
