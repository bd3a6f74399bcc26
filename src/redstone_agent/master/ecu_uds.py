"""The Master's port to one legacy ECU it flashes itself over UDS (DoCAN or DoIP).

A UDS ECU has no update agent: what it runs is whatever its version DID
says, and the flasher (``uds/flasher.py``) programs, resets and verifies in
one go, rolling back by itself when the new image fails. So every operation
here first reads the version DID and does only what is missing; activate and
commit have nothing left to do.

**Versions.** :attr:`Image.version` must be exactly the string the ECU
reports from its version DID once the image runs — the flasher compares the
two after the reset and rolls back on a mismatch. The ECU simulator (and a
typical bootloader) reads that DID from the image itself: ``version_length``
bytes at ``version_offset`` of the first region (defaults 16 at 0), with the
trailing NUL/0xFF padding stripped. So an image published with
``custom.version = "2.0.0"`` must carry ``b"2.0.0"`` padded to 16 bytes there.

**Journal** (``<state_dir>/uds-<serial>.json``): the ECU cannot say which
Uptane target it runs, only a version, so the Master remembers the image
(target, sha256, length, release counter, version) it last installed, the one
before it (the other bank of a dual-bank ECU) and the one it is flashing now
(``pending``, written before the flash starts). The version manifest names the
journaled image only when the ECU's version confirms it. The factory image is
journaled by name only (``installed-target``); the first job whose
``previous`` is that target brings its verified hash, length and release
counter (:meth:`UdsPort.learn_installed`), so later manifests carry them.

**Diagnostics** (a :class:`~redstone_agent.master.diagnostics.DiagnosticPort`):
software-version DIDs and DTCs read before and after a campaign, and DTCs
cleared on request (``uds/diagnostics.py``), one conversation at a time like
every other operation here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redstone_agent.journal import Journal, JournalCorrupt
from redstone_agent.master.diagnostics import EcuDiagnosis
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import EcuJob, EcuStanding, Image, ProgressFn, StepResult
from redstone_agent.master.topology import EcuSpec
from redstone_agent.uds.config import EcuConfig
from redstone_agent.uds.diagnostics import SOFTWARE_VERSION_DIDS, clear_ecu, read_ecu
from redstone_agent.uds.errors import ImageError, UdsError
from redstone_agent.uds.flasher import Flasher, FlashImage, FlashReport
from redstone_agent.uds.flasher import Progress as FlashProgress
from redstone_agent.uds.link import LinkFactory, open_link
from redstone_agent.uds.rollback import Outcome
from redstone_agent.uds.running import Installed, reported_image
from redstone_agent.uds.running import describe_outcome as describe_running
from redstone_agent.uptane.keys import Signer
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """The journal's content."""

    image: Installed
    before: Installed | None = None
    """What ran before ``image``: the other bank of a dual-bank ECU."""
    pending: Installed | None = None
    """Being flashed right now (written before the flash, cleared after it)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        def optional(raw: Any) -> Installed | None:
            return None if raw is None else Installed(**raw)

        return cls(
            Installed(**data["image"]), optional(data.get("before")), optional(data.get("pending"))
        )


def standing_of(version: str | None, job: EcuJob, record: Record) -> EcuStanding:
    """Where the ECU stands, from its version DID (None or "" = unreadable / bootloader).

    OLD needs the version the rollback would restore: ``job.previous`` when
    given, else the journaled image that is not the new one; an ECU running a
    third version is FAILED (neither old nor new), which makes the engine
    flash the previous image back.
    """
    if not version:
        return EcuStanding.FAILED
    if version == job.new.version:
        return EcuStanding.NEW
    old = _expected_old(job, record)
    if old is None or old.matches(version):
        return EcuStanding.OLD
    return EcuStanding.FAILED


def _expected_old(job: EcuJob, record: Record) -> Installed | None:
    if job.previous is not None:
        return Installed.of(job.previous)
    if record.image.target != job.new.target:
        return record.image
    return record.before


def describe_outcome(report: FlashReport) -> str:
    """What the ECU runs after a failed flash, in words."""
    return describe_running(report.outcome, report.version_after)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class UdsPort:
    """One UDS ECU as the campaign engine sees it (an :class:`EcuPort`)."""

    def __init__(
        self,
        spec: EcuSpec,
        ecu: EcuConfig,
        state_dir: Path,
        signer: Signer,
        *,
        link_factory: LinkFactory = open_link,
    ) -> None:
        self.serial = spec.serial
        self._spec = spec
        self._ecu = ecu
        self._signer = signer
        self._link_factory = link_factory
        self._flasher = Flasher(ecu, link_factory=link_factory)
        self._journal = Journal(Path(state_dir) / f"uds-{spec.serial}.json")
        self._lock = asyncio.Lock()
        """One conversation with the ECU at a time (a flash owns its session)."""

    # -- queries -------------------------------------------------------------

    async def manifest(self, nonce: str) -> dict[str, Any]:
        """The journaled image when the ECU's version confirms it, else the read version."""
        pending = self._load().pending
        if self._lock.locked() and pending is not None:
            # A flash owns the ECU (minutes): say so rather than wait for it.
            return self._sign(nonce, Installed(""), None, f"flashing {pending.version}")
        async with self._lock:
            version = await asyncio.to_thread(self._flasher.read_version)
            record = self._load()
        image, detail = reported_image(version, record.image, record.pending)
        return self._sign(nonce, image, version, detail)

    def _sign(
        self, nonce: str, image: Installed, version: str | None, detail: str
    ) -> dict[str, Any]:
        report = {
            "hardware_id": self._spec.hardware_id,
            "transport": self._ecu.transport,
            "version": version or "",
            "detail": detail,
        }
        manifest = EcuManifest(
            ecu_serial=self.serial,
            filename=image.target,
            length=image.length,
            sha256=image.sha256,
            release_counter=image.release_counter,
            nonce=nonce,
            report=report,
        )
        return sign_ecu_manifest(manifest, self._signer)

    async def standing(self, job: EcuJob) -> EcuStanding:
        self._learn_from(job)
        async with self._lock:
            version = await asyncio.to_thread(self._flasher.read_version)
        return standing_of(version, job, self._load())

    def learn_installed(self, image: Image) -> bool:
        """Take the verified hash, length and release counter of ``image`` for the
        journaled image of the same target that lacks them (the factory image).
        True when the journal changed. The version stays as journaled."""
        record = self._load()
        known = record.image
        if known.sha256 or not image.sha256 or known.target != image.target:
            return False
        learned = dataclasses.replace(
            known, sha256=image.sha256, length=image.length, release_counter=image.release_counter
        )
        self._save(dataclasses.replace(record, image=learned))
        log.info("%s: journaled %s now carries its hash", self.serial, known.target)
        return True

    def _learn_from(self, job: EcuJob) -> None:
        if job.previous is not None:
            self.learn_installed(job.previous)

    # -- diagnostics ---------------------------------------------------------

    async def diagnose(self, status_mask: int) -> EcuDiagnosis:
        """Software versions and the DTCs matching ``status_mask``. Never raises: an ECU
        that does not answer gives a diagnosis with ``error`` set (one line)."""
        dids = tuple(dict.fromkeys((self._ecu.dids.version, *SOFTWARE_VERSION_DIDS)))
        async with self._lock:
            try:
                reading = await asyncio.to_thread(
                    read_ecu,
                    self._ecu,
                    dids=dids,
                    status_mask=status_mask,
                    link_factory=self._link_factory,
                )
            except Exception as exc:  # a diagnosis must never stop a campaign
                log.exception("%s: diagnosis failed", self.serial)
                return EcuDiagnosis(self.serial, error=_one_line(f"diagnosis failed: {exc}"))
        return EcuDiagnosis(self.serial, reading.versions, reading.dtcs, reading.error)

    async def clear_dtcs(self, codes: list[int]) -> None:
        """ClearDiagnosticInformation of each code (0xFFFFFF = all); raises :class:`EcuFailed`
        (one line) when the ECU refuses or does not answer."""
        if not codes:
            return
        async with self._lock:
            try:
                await asyncio.to_thread(
                    clear_ecu, self._ecu, list(codes), link_factory=self._link_factory
                )
            except UdsError as exc:
                raise EcuFailed(
                    self.serial, f"clearing DTCs failed: {_one_line(str(exc))}"
                ) from None

    # -- steps ---------------------------------------------------------------

    async def install(self, job: EcuJob, progress: ProgressFn) -> StepResult:
        """Flash, reset and verify ``job.new`` unless the ECU already runs it."""
        self._learn_from(job)
        async with self._lock:
            version = await asyncio.to_thread(self._flasher.read_version)
            if version == job.new.version:
                self._settle(job.new)
                return StepResult(detail=f"already runs {version}")
            previous = job.previous
            report = await self._flash(job.new, previous, progress)
            if report.outcome is Outcome.INSTALLED:
                self._settle(job.new)
                return StepResult(
                    detail=f"runs {report.version_after}", bytes_sent=report.payload_bytes
                )
            if report.outcome is Outcome.RESTORED and previous is not None:
                self._settle(previous)
            else:
                self._save(dataclasses.replace(self._load(), pending=None))
            raise EcuFailed(
                self.serial,
                _one_line(
                    f"flashing {job.new.version} failed: {report.error}; "
                    + describe_outcome(report)
                ),
            )

    async def activate(self, job: EcuJob) -> StepResult:
        """Nothing to do: the flash already reset the ECU and verified the new image."""
        return StepResult(detail=f"runs {job.new.version}")

    async def commit(self, job: EcuJob) -> StepResult:
        """Nothing to do: a UDS ECU has no trial state to leave."""
        return StepResult(detail=f"runs {job.new.version}")

    async def rollback(self, job: EcuJob) -> StepResult:
        """Flash ``job.previous`` back (or switch banks) unless the ECU already runs it."""
        self._learn_from(job)
        async with self._lock:
            version = await asyncio.to_thread(self._flasher.read_version)
            record = self._load()
            if standing_of(version, job, record) is EcuStanding.OLD:
                if job.previous is not None:
                    self._settle(job.previous)  # the journal may lag a killed rollback
                return StepResult(detail=f"runs {version}")
            previous = job.previous
            if previous is not None:
                report = await self._flash(previous, None, lambda _done, _total: None)
                if report.outcome is not Outcome.INSTALLED:
                    raise EcuFailed(
                        self.serial,
                        _one_line(
                            f"rollback to {previous.version} failed: {report.error}; "
                            + describe_outcome(report)
                        ),
                    )
                self._settle(previous)
                return StepResult(
                    detail=f"runs {previous.version}", bytes_sent=report.payload_bytes
                )
            if not self._ecu.programming.dual_bank:
                raise EcuFailed(
                    self.serial,
                    f"cannot roll back from {version or 'the bootloader'}: no previous image "
                    "and the ECU is single-bank",
                )
            try:
                running = await asyncio.to_thread(self._flasher.switch_bank)
            except UdsError as exc:
                raise EcuFailed(
                    self.serial, f"switching banks failed: {_one_line(str(exc))}"
                ) from None
            old = _expected_old(job, record)
            if not running or running == job.new.version or (old and not old.matches(running)):
                raise EcuFailed(
                    self.serial, f"switched banks but runs {running or 'nothing (bootloader)'}"
                )
            self._save(Record(record.before or Installed(running, version=running), record.image))
            return StepResult(detail=f"switched back to its other bank, runs {running}")

    # -- flashing ------------------------------------------------------------

    async def _flash(
        self, image: Image, previous: Image | None, progress: ProgressFn
    ) -> FlashReport:
        """Journal the intent, then program/reset/verify in a worker thread."""
        data, before = await asyncio.to_thread(_read_images, image, previous)
        self._save(dataclasses.replace(self._load(), pending=Installed.of(image)))
        loop = asyncio.get_running_loop()

        def forward(step: FlashProgress) -> None:  # worker thread
            if step.phase == "download":
                loop.call_soon_threadsafe(progress, step.done, step.total)

        cancel = threading.Event()
        try:
            fallback = None
            if previous is not None and before is not None:
                fallback = FlashImage(before, previous.version)
            work = asyncio.ensure_future(
                self._flasher.install_async(
                    FlashImage(data, image.version),
                    previous=fallback,
                    progress=forward,
                    cancel=cancel,
                )
            )
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # Stopped by the campaign (a rule broke, a cancel): the worker stops at
                # its next request and leaves the ECU in its bootloader; wait for it, so
                # the bus is free and no flash of this ECU runs behind our back.
                cancel.set()
                with contextlib.suppress(Exception):
                    await work
                raise
        except ImageError as exc:  # refused before touching the ECU
            self._save(dataclasses.replace(self._load(), pending=None))
            raise EcuFailed(self.serial, _one_line(str(exc))) from None

    def _settle(self, image: Image) -> None:
        """The ECU runs ``image``: journal it (the one it replaced becomes ``before``)."""
        record = self._load()
        now = Installed.of(image)
        if record.image == now:
            if record.pending is not None:
                self._save(dataclasses.replace(record, pending=None))
            return
        self._save(Record(now, before=record.image))

    # -- journal -------------------------------------------------------------

    def _load(self) -> Record:
        try:
            saved = self._journal.load()
            if saved is not None:
                return Record.from_dict(saved)
        except (JournalCorrupt, KeyError, TypeError) as exc:
            log.error(
                "%s: journal %s unreadable (%s); starting over",
                self.serial,
                self._journal.path,
                exc,
            )
        return Record(Installed(self._spec.installed_target))

    def _save(self, record: Record) -> None:
        self._journal.save(record.to_dict())


def _read_images(image: Image, previous: Image | None) -> tuple[bytes, bytes | None]:
    return image.path.read_bytes(), None if previous is None else previous.path.read_bytes()
