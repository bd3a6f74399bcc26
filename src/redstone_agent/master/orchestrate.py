"""Run one campaign phase on many ECUs: in parallel where the vehicle allows it.

Rules (docs/master.md §4):

* every ECU of a lower ``group`` finishes the phase before a higher group starts it;
  the kind's rank comes first (``EcuSpec.order``): the TBox's boot script
  before its rootfs;
* an ECU starts only after the ECUs it ``depends-on`` finished the phase;
* two UDS flashes never share a bus at the same time (a CAN bus or a DoIP
  gateway serves one programming session well, two badly); Subs pull their
  images from the cache themselves, so they run side by side;
* in a forward phase the first failure stops *new* work (ECUs already busy
  finish their step: a flash is never cut off halfway); a rollback phase runs
  on every ECU, in reverse order, whatever fails.

Pure asyncio, no I/O: the operation is injected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from redstone_agent.master.topology import EcuSpec

log = logging.getLogger(__name__)

Operation = Callable[[EcuSpec], Awaitable[None]]


@dataclass
class PhaseResult:
    """Per ECU: ``None`` = done, an exception = failed; absent = never started."""

    outcomes: dict[str, BaseException | None] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, BaseException]:
        return {s: e for s, e in self.outcomes.items() if e is not None}

    @property
    def ok(self) -> bool:
        return not self.failures


async def run_phase(
    ecus: Sequence[EcuSpec], operation: Operation, *, reverse: bool = False
) -> PhaseResult:
    """Run ``operation`` on every ECU under the ordering rules; never raises for an ECU."""
    serials = {e.serial for e in ecus}
    done = {e.serial: asyncio.Event() for e in ecus}
    result = PhaseResult()
    stop = asyncio.Event()
    buses: dict[str, asyncio.Lock] = {}

    def before(ecu: EcuSpec) -> list[str]:
        """Serials that must finish first (only those taking part in this phase)."""
        if reverse:
            later = [e.serial for e in ecus if e.order > ecu.order]
            dependents = [e.serial for e in ecus if ecu.serial in e.depends_on]
            return later + dependents
        earlier = [e.serial for e in ecus if e.order < ecu.order]
        return earlier + [d for d in ecu.depends_on if d in serials]

    async def one(ecu: EcuSpec) -> None:
        try:
            for serial in before(ecu):
                await done[serial].wait()
            if stop.is_set() and not reverse:
                return
            lock = buses.setdefault(ecu.bus_name, asyncio.Lock()) if ecu.kind.is_uds else None
            if lock is not None:
                async with lock:
                    if stop.is_set() and not reverse:
                        return
                    await operation(ecu)
            else:
                await operation(ecu)
            result.outcomes[ecu.serial] = None
        except Exception as exc:  # the phase reports it; other ECUs go on
            log.debug("%s failed", ecu.serial, exc_info=True)
            result.outcomes[ecu.serial] = exc
            stop.set()
        finally:
            done[ecu.serial].set()

    await asyncio.gather(*(one(e) for e in ecus))
    return result
