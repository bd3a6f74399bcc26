"""Maps the engine's :class:`Slots` port onto the project's :class:`SlotManager`.

The slot manager writes, verifies *and* primes the new slot in one
transaction, so READY already means "primary for one trial"; Activate then
only checks that and reboots. Discarding a READY slot marks it bad again.

A delta's own length and hash go to the slot layer as ``source_digest``: it
caps and hashes the delta while it streams and refuses, before priming, bytes
that are not the signed delta file. That refusal is VERIFICATION_FAILED (the
Master served something other than what Uptane signed), not INSTALL_FAILED.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from redstone_agent.slots import (
    InstallFailed,
    SlotManager,
    SlotsConfig,
    SourceDigest,
    SourceMismatch,
)
from redstone_agent.slots.status import NodeState
from redstone_agent.someip.interface import ResultCode
from redstone_agent.sub.errors import SubError
from redstone_agent.sub.slots_port import DeltaSource


class ManagedSlots:
    """The :class:`Slots` port backed by ``redstone_agent.slots.SlotManager``."""

    def __init__(self, config: SlotsConfig) -> None:
        self._manager = SlotManager(config)

    def booted(self) -> str:
        return self._manager.booted

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
        # The slot layer tells a block delta from a full image by its magic and
        # applies it against the running slot while streaming; the result is
        # verified against ``sha256``/``size`` (the image the slot will hold)
        # and the delta file against its own length and hash.
        try:
            self._manager.install(
                delta.url if delta is not None else url,
                sha256=sha256,
                size=size,
                progress=lambda done, _total: progress(done),
                cancel=cancel,
                source_digest=None
                if delta is None
                else SourceDigest(sha256=delta.sha256, length=delta.length),
            )
        except InstallFailed as exc:
            if isinstance(exc.__cause__, SourceMismatch):
                raise SubError(str(exc), ResultCode.VERIFICATION_FAILED) from exc
            raise

    def resume_offset(self, sha256: str, size: int) -> int:
        return self._manager.resume_offset(sha256, size)

    def activate(self) -> None:
        status = self._manager.status()
        if status.state is not NodeState.INSTALLED:
            raise SubError(
                f"slot layer is {status.state.value}, not installed", ResultCode.WRONG_STATE
            )

    def trial_pending(self) -> bool:
        return self._manager.status().state is NodeState.INSTALLED

    def mark_good(self) -> None:
        self._manager.mark_good()

    def mark_bad(self, reason: str) -> None:
        self._manager.mark_bad(reason)

    def discard(self) -> None:
        self._manager.discard()

    def acknowledge(self) -> None:
        self._manager.acknowledge()
