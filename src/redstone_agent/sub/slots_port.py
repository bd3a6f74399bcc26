"""What the engine needs from the A/B slot layer (``redstone_agent.slots``).

Kept to a handful of calls so the engine's tests and an OEM's own slot handling can
implement it; :mod:`redstone_agent.sub.slots_adapter` maps it onto the
project's slot manager.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DeltaSource:
    """Install from a delta against the booted image instead of a full image.

    ``sha256``/``length`` are the delta file's own (what Uptane signed for a
    delta assignment): an implementation must read at most ``length`` bytes
    and refuse, before the slot is primed, a file with another hash.
    """

    url: str
    sha256: str
    length: int
    source_sha256: str


class Slots(Protocol):
    def booted(self) -> str:
        """The slot the kernel was started from (``A`` or ``B``)."""

    def install(
        self,
        url: str,
        *,
        sha256: str,
        size: int,
        progress: Callable[[int], None],
        cancel: threading.Event,
        delta: DeltaSource | None = None,
    ) -> None:
        """Stream into the inactive slot and verify it; blocking, raises on any failure.

        ``sha256``/``size`` are the resulting image's, whether it comes from
        ``url`` or is rebuilt from ``delta``.
        """

    def resume_offset(self, sha256: str, size: int) -> int:
        """Bytes of this image an interrupted install left durably in the inactive slot.

        Where the next :meth:`install` of the same full image will continue
        (0: from the start); only reported in the status, the install decides.
        """

    def activate(self) -> None:
        """Make the freshly installed inactive slot primary with its try counter."""

    def trial_pending(self) -> bool:
        """Whether the other slot is primed and the bootloader will still try it."""

    def mark_good(self) -> None:
        """Commit the booted slot."""

    def mark_bad(self, reason: str) -> None:
        """Make the booted slot unbootable so the next boot falls back."""

    def discard(self) -> None:
        """Forget an installed, not yet booted slot: the booted slot stays primary."""

    def acknowledge(self) -> None:
        """Clear a rollback report once the Master has been told."""
