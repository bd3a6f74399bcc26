"""From a source location to verified bytes in a slot: the data path of an install."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from redstone_agent.retry import RetryPolicy
from redstone_agent.slots.writer import SlotWriter, WriteResult
from redstone_agent.transfer import decompressing, open_source


def write_slot(
    source: str,
    device: Path,
    *,
    sha256: str,
    size: int | None,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    verify_readback: bool = False,
    retry: RetryPolicy | None = None,
) -> WriteResult:
    """Stream ``source`` (plain, xz or zstd) into ``device`` and verify length and hash.

    Nothing here touches the bootloader: the caller switches only after this
    returns, so an exception means the slot must be treated as garbage.
    """
    with (
        open_source(source, cancel=cancel, retry=retry or RetryPolicy()) as raw,
        SlotWriter(
            device,
            expected_size=size,
            expected_sha256=sha256,
            progress=progress,
            cancel=cancel,
            verify_readback=verify_readback,
        ) as sink,
    ):
        sink.write_from(decompressing(raw))
        return sink.finish()
