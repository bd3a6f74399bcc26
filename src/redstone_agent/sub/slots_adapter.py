"""Maps the engine's :class:`Slots` port onto the project's :class:`SlotManager`.

The slot manager writes, verifies *and* primes the new slot in one
transaction, so READY already means "primary for one trial"; Activate then
only checks that and reboots. Discarding a READY slot marks it bad again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from redstone_agent.slots import SlotManager, SlotsConfig
from redstone_agent.slots.scheme import other_slot
from redstone_agent.slots.status import NodeState
from redstone_agent.someip.interface import ResultCode
from redstone_agent.sub.delta_install import rebuild_from_delta
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
        source = url
        scratch = self._manager.config.state_dir / "delta-rebuilt.img"
        if delta is not None:
            booted = self._manager.config.device(self.booted())
            rebuild_from_delta(delta, booted, scratch, progress=progress, cancel=cancel)
            source = str(scratch)
        try:
            self._install(source, sha256, size, progress, cancel)
        finally:
            scratch.unlink(missing_ok=True)

    def _install(
        self,
        source: str,
        sha256: str,
        size: int,
        progress: Callable[[int], None],
        cancel: threading.Event,
    ) -> None:
        self._manager.install(
            source,
            sha256=sha256,
            size=size,
            progress=lambda done, _total: progress(done),
            cancel=cancel,
        )

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
        env = self._manager.bootenv
        env.save_state(env.load_state().mark_bad(other_slot(self.booted())))
        self.acknowledge()

    def acknowledge(self) -> None:
        self._manager.status()
        self._manager.acknowledge()
