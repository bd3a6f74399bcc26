"""The running Master as the D-Bus API sees it (``control.MasterControl``).

Consent answers go to the :class:`~redstone_agent.master.policy.ConsentStore`
and wake the engine's waiting gate; cancel, rollback and bundles go to the
engine; record changes and log lines fan out to the subscribers (the D-Bus
interface emits them as signals and ``PropertiesChanged``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from pathlib import Path

from redstone_agent.master.control import ControlError, LogListener, RecordListener
from redstone_agent.master.engine import Engine
from redstone_agent.master.policy import ACCEPT, DECLINE, MAX_POSTPONE_S, POSTPONE, ConsentStore
from redstone_agent.master.record import CampaignRecord
from redstone_agent.master.states import SETTLED, CampaignState

log = logging.getLogger(__name__)


class LogRing(logging.Handler):
    """The Master's last log lines, and a feed of new ones (``redstonectl logs -f``).

    Records come from every thread (downloads, UDS flashes run in workers), but a
    listener (the D-Bus ``LogLine`` signal) belongs to the event loop it subscribed
    from: a line logged elsewhere is handed to that loop, never sent from the worker —
    two threads writing one D-Bus connection corrupt its stream and the bus drops it.
    """

    def __init__(self, keep: int = 1000) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._listeners: list[tuple[asyncio.AbstractEventLoop | None, LogListener]] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def listen(self, listener: LogListener) -> None:
        """Feed new lines to ``listener``, on the loop running now (if any)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._listeners.append((loop, listener))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).splitlines()[0]
        except Exception:  # a log line must never break the daemon
            return
        self.lines.append(line)
        for entry in list(self._listeners):
            loop = entry[0]
            if loop is None or _running_loop() is loop:
                self._deliver(entry, line)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self._deliver, entry, line)

    def _deliver(
        self, entry: tuple[asyncio.AbstractEventLoop | None, LogListener], line: str
    ) -> None:
        try:
            entry[1](line)
        except Exception:
            if entry in self._listeners:
                self._listeners.remove(entry)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class MasterController:
    def __init__(
        self,
        engine: Engine,
        consent: ConsentStore,
        check_now: Callable[[], None],
        logs: LogRing,
    ) -> None:
        self._engine = engine
        self._consent = consent
        self._check_now = check_now
        self._logs = logs
        self._listeners: list[RecordListener] = []

    @property
    def record(self) -> CampaignRecord:
        return self._engine.record

    def subscribe(self, on_record: RecordListener, on_log: LogListener) -> None:
        self._listeners.append(on_record)
        self._logs.listen(on_log)

    def published(self, record: CampaignRecord) -> None:
        """The daemon calls this after every (throttled) record change."""
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:
                log.exception("a status listener failed")

    def recent_logs(self, lines: int) -> list[str]:
        return list(self._logs.lines)[-lines:] if lines > 0 else []

    def check_now(self) -> None:
        self._check_now()

    def _answer(self, kind: str, seconds: float = 0.0) -> None:
        record = self.record
        if record.state in SETTLED or not record.campaign:
            raise ControlError(
                "NotWaiting", f"no campaign is running (state: {record.state.value})"
            )
        if record.state is CampaignState.COMMITTING:
            raise ControlError("PastCommitPoint", "the campaign is past its commit point")
        if kind != ACCEPT and record.consent == "given":
            raise ControlError(
                "NotWaiting", f"consent to {record.campaign} was already given; cancel stops it"
            )
        self._consent.answer(record.campaign, kind, seconds)
        log.info("the driver answered %s for campaign %s", kind, record.campaign)
        self._engine.nudge()

    async def accept(self) -> None:
        self._answer(ACCEPT)

    async def decline(self) -> None:
        self._answer(DECLINE)

    async def postpone(self, seconds: float) -> None:
        if not 1 <= seconds <= MAX_POSTPONE_S:
            raise ControlError("BadArgument", f"postpone 1 s .. 7 days, not {seconds:.0f} s")
        self._answer(POSTPONE, seconds)

    async def cancel(self) -> None:
        await self._engine.cancel()

    async def rollback(self) -> None:
        await self._engine.rollback()

    async def install_bundle(self, path: Path) -> str:
        if not path.is_absolute():
            raise ControlError("BadArgument", f"bundle path must be absolute: {path}")
        return await self._engine.install_bundle(str(path))
