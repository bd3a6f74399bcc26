"""Rebuild a full image from a delta against the booted slot, into a scratch file.

The slot manager's transaction takes a full image; until it streams deltas
itself, the Sub rebuilds the image next to its state (memory bounded by the
delta block size, disk by the image size) and installs that file, which the
transaction verifies against the Uptane-verified sha256 like any download.
"""

from __future__ import annotations

import hmac
import io
import threading
from collections.abc import Callable
from pathlib import Path

from redstone_agent.someip.interface import ResultCode
from redstone_agent.sub.errors import SubError
from redstone_agent.sub.slots_port import DeltaSource


class SlotWindow(io.RawIOBase):
    """The first ``length`` bytes of a slot device, seekable (the delta's source image)."""

    def __init__(self, device: Path, length: int) -> None:
        super().__init__()
        self._file = device.open("rb")
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        self._file.seek(self._pos)
        data = self._file.read(want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def rebuild_from_delta(
    delta: DeltaSource,
    booted_device: Path,
    output: Path,
    *,
    progress: Callable[[int], None],
    cancel: threading.Event,
) -> None:
    """Apply the size-capped ``delta`` download to the booted slot, writing ``output``."""
    from redstone_agent.delta import DeltaError, apply_delta, read_header
    from redstone_agent.transfer import TransferError, open_source

    try:
        with open_source(delta.url, cancel=cancel, max_bytes=delta.length) as raw:
            stream = raw.as_stream()
            header = read_header(stream)
            if not hmac.compare_digest(header.source_sha256.hex(), delta.source_sha256):
                raise SubError("delta was made for another source image", ResultCode.INSTALL_FAILED)
            with SlotWindow(booted_device, header.source_size) as source, output.open("wb") as out:
                apply_delta(
                    stream,
                    source,
                    out,
                    header=header,
                    progress=lambda done, _total: progress(done),
                )
    except TransferError as exc:
        raise SubError(f"delta download failed: {exc}", ResultCode.TRANSFER_FAILED) from exc
    except DeltaError as exc:
        raise SubError(f"delta rejected: {exc}", ResultCode.INSTALL_FAILED) from exc
