"""Offline releases of the guest tests, built once per input and cached.

A guest test needs from a cloud only what a factory and a USB stick carry: a provisioned
disk (keys and trust roots of that cloud on the data partition) and bundles signed by it
(docs/bundle.md). Making them starts a cloud, makes and checks block deltas of 288 MiB
rootfs images and signs metadata — minutes of CPU that a warm run should not pay. An
entry (``<kind>-<key>`` under the QEMU cache, :mod:`tools.qemu.cache`) is keyed by the
files that make it; it is rebuilt when its bundles' metadata would expire within
:data:`EXPIRY_MARGIN` (the director's timestamp lives one day), so a run never starts
with bundles its guest would refuse for their age.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tools.qemu.cache import cache_root, cached, input_key

REPO = Path(__file__).resolve().parents[2]
EXPIRY_MARGIN = dt.timedelta(hours=3)
EXPIRES = "expires"
QEMU_INPUTS = tuple(
    REPO / "tools" / "qemu" / name
    for name in ("board.py", "disk.py", "vehicle/board.py", "vehicle/image.py")
)
"""The harness code every entry's disk and stick are made with."""


@dataclass(frozen=True)
class OfflineRelease:
    """An entry's files: the factory board's disk and the USB stick of bundles."""

    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "disk.img"

    @property
    def stick(self) -> Path:
        return self.directory / "stick.img"


def bundle_expiry(bundle: Path) -> dt.datetime:
    """When ``bundle``'s metadata expires (its ``manifest.json``, docs/bundle.md)."""
    with tarfile.open(bundle) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None, bundle
        expires = str(json.loads(member.read())["expires"])
    return dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))


def cached_release(
    kind: str,
    inputs: Iterable[str | Path],
    build: Callable[[Path, Path], Iterable[Path]],
) -> Path:
    """The entry of ``kind`` for ``inputs``: ``build(work, out)`` fills ``out`` (``work`` is
    a scratch directory removed afterwards) and returns the bundles it made, whose
    earliest expiry the entry records."""
    key = input_key([Path(__file__).resolve(), *QEMU_INPUTS, *inputs])
    entry = cache_root() / f"{kind}-{key}"
    expires = entry / EXPIRES
    if expires.is_file():
        left = dt.datetime.fromisoformat(expires.read_text().strip()) - dt.datetime.now(dt.UTC)
        if left < EXPIRY_MARGIN:
            shutil.rmtree(entry, ignore_errors=True)

    def fill(out: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"redstone-{kind}-"))
        try:
            bundles = list(build(work, out))
            assert bundles, f"{kind}: no bundle made"
            expires = min(bundle_expiry(b) for b in bundles)  # they may live in ``work``
        finally:
            shutil.rmtree(work, ignore_errors=True)
        (out / EXPIRES).write_text(expires.isoformat() + "\n")

    return cached(kind, key, fill)
