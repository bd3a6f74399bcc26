"""Flash one ECU: program, reset, verify, and roll back when the new image fails.

This is the API the Master daemon calls. :meth:`Flasher.install` blocks and is
meant for a worker thread (``asyncio.to_thread``); :meth:`Flasher.install_async`
does that for you. Progress arrives through a callback (called from the worker
thread), cancellation through a :class:`threading.Event` checked between requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redstone_agent.uds.config import EcuConfig
from redstone_agent.uds.errors import (
    FlashCancelledError,
    ImageError,
    TransportError,
    UdsError,
    VerificationError,
)
from redstone_agent.uds.link import LinkFactory, open_link
from redstone_agent.uds.rollback import Outcome, RollbackAction, outcome_of, plan_rollback
from redstone_agent.uds.sequence import (
    EXTENDED_SESSION,
    ProgrammingSequence,
    ProgressFn,
    TransferStats,
    read_raw,
)
from redstone_agent.uds.session import Channel

log = logging.getLogger(__name__)
DEFAULT_FINGERPRINT = b"REDSTONE"


@dataclass(frozen=True)
class FlashImage:
    """An image for one region and the version the ECU must report once it runs."""

    data: bytes
    version: str
    region: str = "app"


@dataclass(frozen=True)
class Progress:
    """One progress step: ``phase`` is prepare/erase/download/check/reset/verify/rollback."""

    ecu: str
    phase: str
    done: int
    total: int


@dataclass(frozen=True)
class FlashReport:
    """How a flash ended and what the wire saw."""

    ecu: str
    outcome: Outcome
    version_before: str | None
    version_after: str | None
    error: str | None = None
    """Why the new image is not running (None when installed)."""
    blocks_resent: int = 0
    restarts: int = 0
    payload_bytes: int = 0
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)


ProgressCallback = Callable[[Progress], None]


@dataclass
class _Run:
    """State of one :meth:`Flasher.install` call, shared by its steps."""

    channel: Channel
    notify: ProgressFn
    stats: TransferStats = field(default_factory=TransferStats)
    steps: list[str] = field(default_factory=list)


class Flasher:
    """Flashes images into one configured ECU."""

    def __init__(
        self,
        ecu: EcuConfig,
        *,
        fingerprint: bytes = DEFAULT_FINGERPRINT,
        link_factory: LinkFactory = open_link,
    ) -> None:
        self.ecu = ecu
        self.fingerprint = fingerprint
        self.link_factory = link_factory

    async def install_async(
        self,
        image: FlashImage,
        *,
        previous: FlashImage | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> FlashReport:
        """:meth:`install` in a worker thread, for asyncio callers."""
        return await asyncio.to_thread(
            self.install, image, previous=previous, progress=progress, cancel=cancel
        )

    def install(
        self,
        image: FlashImage,
        *,
        previous: FlashImage | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> FlashReport:
        """Flash ``image``, verify it runs, roll back to ``previous`` (or the other bank) if not.

        Raises :class:`ImageError` before touching the ECU when the image cannot
        fit; every later failure is reported in the returned :class:`FlashReport`.
        """
        self._check_image(image)
        if previous is not None:
            self._check_image(previous)
        started = time.monotonic()
        run = _Run(Channel(self.ecu, self.link_factory), self._notifier(progress))
        after: str | None
        try:
            version_before = self._try_read_version(run.channel)
            try:
                self._flash_and_verify(run, image, cancel or threading.Event())
                outcome, error, after = Outcome.INSTALLED, None, image.version
                run.steps.append(f"installed {image.version}")
            except FlashCancelledError as exc:
                self._leave_in_bootloader(run)
                outcome, error = Outcome.CANCELLED, str(exc)
                after = self._try_read_version(run.channel)
            except UdsError as exc:
                log.error("%s: %s", self.ecu.name, exc)
                run.steps.append(f"failed: {exc}")
                outcome, after = self._roll_back(run, previous, version_before)
                error = str(exc)
        finally:
            run.channel.drop()
        stats = run.stats
        log.info(
            "%s: %s (version %s -> %s) in %.1f s, %d blocks resent, %d restarts",
            self.ecu.name,
            outcome,
            version_before,
            after,
            time.monotonic() - started,
            stats.blocks_resent,
            stats.restarts,
        )
        return FlashReport(
            ecu=self.ecu.name,
            outcome=outcome,
            version_before=version_before,
            version_after=after,
            error=error,
            blocks_resent=stats.blocks_resent,
            restarts=stats.restarts,
            payload_bytes=stats.payload_bytes,
            seconds=time.monotonic() - started,
            steps=run.steps,
        )

    def read_version(self) -> str | None:
        """The version DID now (blocking), or None when the ECU does not answer it."""
        channel = Channel(self.ecu, self.link_factory)
        try:
            return self._try_read_version(channel) or None
        finally:
            channel.drop()

    def switch_bank(self) -> str | None:
        """Make a dual-bank ECU's other bank active, reset, and read the version back
        (blocking; None when unreadable): the rollback when no previous image is at hand.

        Raises :class:`UdsError` when the switch itself fails.
        """
        run = _Run(Channel(self.ecu, self.link_factory), self._notifier(None))
        try:
            self._switch_bank(run)
        finally:
            run.channel.drop()
        return self.read_version()

    def _check_image(self, image: FlashImage) -> None:
        region = self.ecu.region(image.region)
        if not image.data:
            raise ImageError(f"ECU {self.ecu.name}: image for region {region.name} is empty")
        if len(image.data) > region.size:
            raise ImageError(
                f"ECU {self.ecu.name}: image of {len(image.data)} bytes does not fit region "
                f"{region.name} ({region.size} bytes at 0x{region.address:X})"
            )

    def _notifier(self, progress: ProgressCallback | None) -> ProgressFn:
        def notify(phase: str, done: int, total: int) -> None:
            if progress is not None:
                progress(Progress(self.ecu.name, phase, done, total))

        return notify

    def _flash_and_verify(self, run: _Run, image: FlashImage, cancel: threading.Event) -> None:
        self._sequence(run, cancel).run(image.data, self.ecu.region(image.region))
        self._reset(run)
        self._verify(run, image.version)

    def _sequence(self, run: _Run, cancel: threading.Event | None = None) -> ProgrammingSequence:
        return ProgrammingSequence(
            run.channel, self.fingerprint, run.notify, cancel or threading.Event(), run.stats
        )

    def _reset(self, run: _Run) -> None:
        """ECUReset, then wait for the restart; a lost answer is fine, the ECU resets anyway."""
        run.notify("reset", 0, 1)
        reset_type = self.ecu.programming.reset_type
        try:
            run.channel.call("ECU reset", lambda c: c.ecu_reset(reset_type), retry=False)
        except TransportError as exc:
            log.warning("%s; assuming the ECU reset", exc)
        run.channel.drop()  # the ECU restarts; DoIP closes its sockets
        time.sleep(self.ecu.programming.reset_settle)

    def _verify(self, run: _Run, expected: str) -> None:
        """Read back the version DID and run the ECU's check routine in the application."""
        run.notify("verify", 0, 1)
        run.channel.reconnect(0.0)
        running = self._read_version(run.channel)
        if running != expected:
            raise VerificationError(
                f"ECU {self.ecu.name}: runs version {running!r} after reset, expected {expected!r}"
            )
        sequence = self._sequence(run)
        sequence.change_session("extended session", EXTENDED_SESSION)
        sequence.routine("post-reset check", self.ecu.routines.check_dependencies)

    def _read_version(self, channel: Channel) -> str:
        raw = channel.call("read version", lambda c: read_raw(c, self.ecu.dids.version))
        return raw.rstrip(b"\x00\xff").decode("ascii", "replace")

    def _try_read_version(self, channel: Channel) -> str | None:
        try:
            return self._read_version(channel)
        except UdsError as exc:
            log.info("%s: version unreadable (%s)", self.ecu.name, exc)
            channel.drop()
            return None

    def _leave_in_bootloader(self, run: _Run) -> None:
        """After a cancel: reset so the ECU boots into its bootloader, ready for a new flash."""
        try:
            self._reset(run)
        except UdsError as exc:
            log.warning("%s: reset after cancel failed: %s", self.ecu.name, exc)

    def _roll_back(
        self, run: _Run, previous: FlashImage | None, version_before: str | None
    ) -> tuple[Outcome, str | None]:
        """Reset out of the programming session, then apply :func:`plan_rollback`'s choice."""
        run.notify("rollback", 0, 1)
        channel = run.channel
        try:
            channel.reconnect(self.ecu.timing.reconnect_delay)
            self._reset(run)  # leave the programming session: the ECU boots what is valid
            channel.reconnect(0.0)
            action = plan_rollback(
                dual_bank=self.ecu.programming.dual_bank,
                has_previous_image=previous is not None,
                running_version=self._try_read_version(channel),
                version_before=version_before,
            )
            run.steps.append(f"rollback: {action}")
            if action is RollbackAction.SWITCH_BANK:
                self._switch_bank(run)
            elif action is RollbackAction.REFLASH_PREVIOUS:
                assert previous is not None
                self._flash_and_verify(run, previous, threading.Event())
            after = self._try_read_version(channel)
            if action is RollbackAction.SWITCH_BANK and version_before and after != version_before:
                raise VerificationError(f"ECU {self.ecu.name}: other bank runs {after!r}")
            return outcome_of(action), after
        except UdsError as exc:
            log.error("%s: rollback failed: %s", self.ecu.name, exc)
            run.steps.append(f"rollback failed: {exc}")
            return Outcome.FAILED, self._try_read_version(channel)

    def _switch_bank(self, run: _Run) -> None:
        sequence = self._sequence(run)
        sequence.enter_programming()
        sequence.routine("switch bank", self.ecu.routines.switch_bank)
        self._reset(run)
        run.channel.reconnect(0.0)
