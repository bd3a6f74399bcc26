"""The A/B install transaction and the node's status, persisted across reboots.

Sequence (docs/boot.md): journal the intent → mark the target slot bad → write
and verify it → make it primary with N tries → "installed, reboot pending".
After the reboot the health check calls :meth:`SlotManager.mark_good` (commit)
or :meth:`SlotManager.mark_bad`. If the bootloader fell back, the next look at
the node turns the pending install into a rollback report that stays until
acknowledged. A process killed at any instant leaves the old slot primary or a
fully verified new one primary — never a half-written one.

Resume: while a plain image is written, the ``writing`` record carries its
durable offset (``resume``: offset, source validator, and the image, device
and slot it belongs to). An interrupted or transfer-failed install keeps it
in its ``failed`` record, and the next install of the same image (sha256 and
size) into the same slot continues there (:func:`write_slot`); any other
install, ``acknowledge`` or a successful install drops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from redstone_agent.journal import Journal, StateWriteError
from redstone_agent.retry import RetryPolicy
from redstone_agent.slots.booted import booted_slot
from redstone_agent.slots.bootloader import BootEnv, open_bootenv
from redstone_agent.slots.config import SlotConfig, SlotsConfig
from redstone_agent.slots.errors import BootloaderError, InstallFailed, InstallRefused
from redstone_agent.slots.imaging import ActiveImage, ResumePoint, SourceDigest, write_slot
from redstone_agent.slots.safety import check_writable_slot
from redstone_agent.slots.scheme import SLOTS, BootState, other_slot
from redstone_agent.slots.status import NodeState, NodeStatus, SlotView
from redstone_agent.transfer import SourceChanged, TransferError

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]

# Journal phases. "writing"/"switching" exist only while an install runs.
WRITING = "writing"
SWITCHING = "switching"
INSTALLED = "installed"
REVERTING = "reverting"
ROLLED_BACK = "rolled-back"
FAILED = "failed"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SlotManager:
    """Install into the inactive slot, switch, commit, detect fallback."""

    def __init__(self, config: SlotsConfig, bootenv: BootEnv | None = None) -> None:
        self.config = config
        self.bootenv = bootenv or open_bootenv(config.bootloader)
        self.journal = Journal(config.state_dir / "slots.json")
        self.images = Journal(config.state_dir / "images.json")
        """Which verified image each slot holds (sha256, size): the source of a delta."""
        self._lock_path = config.state_dir / "slots.lock"

    # -- queries ---------------------------------------------------------------------------

    @property
    def booted(self) -> str:
        """The running slot, from the kernel command line."""
        return booted_slot(self.config.cmdline)

    def status(self) -> NodeStatus:
        """The node's state; settles interrupted installs and fallbacks as a side effect."""
        booted = self.booted
        with self._lock(wait=False) as held:
            if not held:
                boot = self.bootenv.load_state()
                return self._view(booted, boot, self.journal.load(), running=True)
            try:
                return self._view(booted, *self._reconcile(booted))
            except StateWriteError as exc:
                # A full or read-only state filesystem must not hide the node's
                # state: show what is on disk, settle it once it can be saved.
                log.warning("status: %s", exc)
                boot = self.bootenv.load_state()
                note = f"not settled: {exc}"
                return self._view(booted, boot, self.journal.load(), notes=[note])

    def resume_offset(self, sha256: str, size: int | None) -> int:
        """Bytes of this image the inactive slot durably holds from an interrupted install.

        What the next :meth:`install` of the same image would continue from
        (0: from the start); read-only, for progress reports. The install
        itself decides again, and re-checks the bytes by their final hash.
        """
        point = _resume_point(
            self.journal.load(),
            other_slot(self.booted),
            self.config.device(other_slot(self.booted)),
            sha256.strip().lower(),
            size,
        )
        return point.offset if point is not None else 0

    # -- operations ------------------------------------------------------------------------

    def install(
        self,
        source: str,
        *,
        sha256: str,
        size: int | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        retry: RetryPolicy | None = None,
        source_digest: SourceDigest | None = None,
    ) -> NodeStatus:
        """Write ``source`` into the inactive slot and make it primary for a trial boot.

        ``source`` is a path or URL of a full image (plain, xz or zstd) or of a
        block delta against the running slot's image; ``sha256`` and ``size``
        describe the resulting image. ``source_digest`` is the length and hash
        of ``source`` itself when the caller verified the file rather than the
        image (a signed delta): at most that many bytes are read and the slot is
        not primed unless they match. On any failure the running
        slot stays primary and the target slot stays marked bad.

        A plain full image continues where an interrupted install of the
        same image into the same slot left off (see the module docstring).
        """
        sha256 = _check_sha256(sha256)
        booted = self.booted
        with self._lock(wait=False) as held:
            if not held:
                raise InstallRefused("another install is running on this node")
            try:
                boot, record = self._reconcile(booted)
            except StateWriteError as exc:
                raise InstallRefused(f"install not started: {exc}") from exc
            state = self._state(booted, boot, record)
            if state is NodeState.TRYING:
                raise InstallRefused(
                    f"slot {booted} is on trial: mark-good or mark-bad it before installing"
                )
            if state is NodeState.REVERTING:
                raise InstallRefused("a rollback is pending: reboot before installing")
            target = other_slot(booted)
            device = self.config.device(target)
            check_writable_slot(device, self.config.device(booted), self.config.mountinfo)
            capacity = self.capacity(target)
            if size is not None and capacity is not None and size > capacity:
                raise InstallRefused(
                    f"the image needs {size} bytes, slot {target} ({device}) holds {capacity}"
                )
            intent = {
                "slot": target,
                "from": booted,
                "sha256": sha256,
                "size": size,
                "source": source,
                "started": _now(),
            }
            resume = None
            if source_digest is None:
                resume = _resume_point(record, target, device, sha256, size)
            journal = _ResumeJournal(self.journal, intent, device)
            log.info(
                "installing %s into slot %s (%s)%s",
                source,
                target,
                device,
                f", continuing at byte {resume.offset}" if resume else "",
            )
            try:
                journal.save(resume)
            except StateWriteError as exc:
                raise InstallRefused(f"install not started: {exc}") from exc
            boot = boot.mark_bad(target)
            self.bootenv.save_state(boot)
            try:
                images = self._forget_image(target)
                result = write_slot(
                    source,
                    device,
                    sha256=sha256,
                    size=size,
                    active=ActiveImage(self.config.device(booted), **images.get(booted, {})),
                    progress=progress,
                    cancel=cancel,
                    verify_readback=self.config.verify_readback,
                    retry=retry,
                    source_digest=source_digest,
                    capacity=capacity,
                    resume=resume,
                    checkpoint=journal.checkpoint,
                )
            except Exception as exc:
                self._record_failure(target, exc, journal.kept)
                raise InstallFailed(f"{exc} (slot {booted} stays active)") from exc
            intent["size"] = result.size
            self.images.save({**images, target: {"sha256": sha256, "size": result.size}})
            self.journal.save({**intent, "phase": SWITCHING})
            boot = boot.try_slot(target, self.config.tries)
            self.bootenv.save_state(boot)
            record = {**intent, "phase": INSTALLED, "installed": _now()}
            self.journal.save(record)
            log.info(
                "slot %s verified (%d bytes, %.1f s); primary with %d tries: reboot to try it",
                target,
                result.size,
                result.seconds,
                self.config.tries,
            )
            return self._view(booted, boot, record)

    def mark_good(self) -> NodeStatus:
        """Commit the running slot: the bootloader keeps booting it."""
        with self._locked() as (booted, boot, record):
            if boot.slots[booted].ok and boot.primary == booted:
                notes = [f"slot {booted} is already committed"]
                return self._view(booted, boot, record, notes=notes)
            boot = boot.commit(booted)
            self.bootenv.save_state(boot)
            if record and record.get("phase") in (INSTALLED, REVERTING):
                self.journal.clear()
                record = None
            log.info("slot %s committed", booted)
            return self._view(booted, boot, record)

    def mark_bad(self, reason: str = "marked bad by the operator") -> NodeStatus:
        """Make the running slot unbootable; the next reboot returns to the other one."""
        with self._locked() as (booted, boot, record):
            other = other_slot(booted)
            if not boot.slots[other].ok:
                raise InstallRefused(
                    f"slot {other} is not committed: marking slot {booted} bad would leave "
                    "nothing known-good to boot"
                )
            boot = boot.mark_bad(booted)
            self.bootenv.save_state(boot)
            record = {
                "phase": REVERTING,
                "slot": booted,
                "from": other,
                "reason": reason,
                "at": _now(),
            }
            self.journal.save(record)
            log.warning(
                "slot %s marked bad (%s): reboot to return to slot %s", booted, reason, other
            )
            return self._view(booted, boot, record)

    def discard(self, reason: str = "install discarded before its trial boot") -> NodeStatus:
        """Un-prime an installed slot that has not been booted: the running slot stays primary.

        For a Master that cancels a campaign between install and reboot; a no-op
        when nothing is pending.
        """
        with self._locked() as (booted, boot, record):
            if self._state(booted, boot, record) is not NodeState.INSTALLED:
                return self._view(booted, boot, record, notes=["no installed update to discard"])
            target = other_slot(booted)
            boot = boot.mark_bad(target)
            self.bootenv.save_state(boot)
            self._forget_image(target)
            self.journal.clear()
            log.info("discarded the update in slot %s (%s)", target, reason)
            return self._view(booted, boot, None)

    def acknowledge(self) -> NodeStatus:
        """Clear a rollback report once it has been seen (and reported to the cloud)."""
        with self._locked() as (booted, boot, record):
            if record and record.get("phase") in (ROLLED_BACK, FAILED):
                self.journal.clear()
                record = None
            return self._view(booted, boot, record)

    def init_bootenv(self, *, force: bool = False) -> NodeStatus:
        """Write a fresh A/B environment: the running slot committed and primary.

        For provisioning and for repairing a corrupt env. Refuses to overwrite a
        valid scheme unless ``force`` — that would forget a pending trial.
        """
        booted = self.booted
        with self._lock(wait=True):
            if not force and self._env_is_valid():
                raise InstallRefused(
                    f"{self.bootenv.description} already holds a valid A/B scheme "
                    "(use --force to reset it)"
                )
            boot = BootState.factory(booted)
            self.bootenv.initialise(boot.to_env())
            self.journal.clear()
            log.info("bootloader env initialised: slot %s committed and primary", booted)
            return self._view(booted, boot, None)

    def capacity(self, slot: str) -> int | None:
        """Bytes ``slot`` may hold: its configured size, else the device's or file's length.

        A file-backed slot is as large as it was preallocated (its length now):
        an image never makes it grow. None only for an empty, unconfigured file.
        """
        config: SlotConfig = getattr(self.config, slot)
        found = _device_length(config.device)
        if config.size is None:
            return found or None
        if found is not None and _is_block(config.device):
            return min(config.size, found)  # a partition smaller than configured
        return config.size

    # -- internals -------------------------------------------------------------------------

    def _forget_image(self, slot: str) -> dict[str, Any]:
        """Drop the image record of ``slot`` (about to change); return the remaining records."""
        images = self.images.load() or {}
        images.pop(slot, None)
        self.images.save(images)
        return images

    def _env_is_valid(self) -> bool:
        try:
            self.bootenv.load_state()
        except BootloaderError:
            return False
        return True

    @contextlib.contextmanager
    def _lock(self, *, wait: bool) -> Iterator[bool]:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[str, BootState, dict[str, Any] | None]]:
        """Hold the lock for an operation: yields the booted slot and the reconciled state."""
        booted = self.booted
        with self._lock(wait=False) as held:
            if not held:
                raise InstallRefused("an install is running on this node; try again when it ends")
            yield (booted, *self._reconcile(booted))

    def _reconcile(self, booted: str) -> tuple[BootState, dict[str, Any] | None]:
        """Bring the journal in line with what the bootloader did. Caller holds the lock."""
        boot = self.bootenv.load_state()
        record = self.journal.load()
        phase = record.get("phase") if record else None
        if record and phase in (WRITING, SWITCHING):
            boot, record = self._settle_interrupted(boot, record)
            phase = record["phase"]
        if record and phase == INSTALLED and booted != record["slot"]:
            slot = record["slot"]
            if not boot.slots[slot].bootable:
                reason = (
                    f"slot {slot} failed its trial boot ({self.config.tries} tries spent); "
                    f"the bootloader returned to slot {booted}"
                )
                record = self._record_rollback(boot, record, reason)
        elif record and phase == REVERTING and booted != record["slot"]:
            reason = f"slot {record['slot']} was {record['reason']}; returned to slot {booted}"
            record = self._record_rollback(boot, record, reason)
        elif record and phase in (INSTALLED, REVERTING) and boot.slots[booted].ok:
            self.journal.clear()  # committed meanwhile
            record = None
        if record and record.get("phase") == ROLLED_BACK and boot.primary != booted:
            boot = boot.mark_bad(other_slot(booted))
            self.bootenv.save_state(boot)
        return boot, record

    def _record_failure(self, slot: str, exc: Exception, kept: dict[str, Any] | None) -> None:
        """Journal a failed install; keep its resume point when only the source failed."""
        reason = f"install into slot {slot} failed: {exc}"
        failed: dict[str, Any] = {"phase": FAILED, "slot": slot, "reason": reason, "at": _now()}
        if kept is not None and _source_failed(exc):
            # The slot's durable prefix is still the image's: a retry continues there.
            failed["resume"] = kept
        try:
            self.journal.save(failed)
        except StateWriteError as lost:
            # Still "writing" on disk: the next look settles it as
            # interrupted (the slot is already marked bad).
            log.error("%s", lost)

    def _settle_interrupted(
        self, boot: BootState, record: dict[str, Any]
    ) -> tuple[BootState, dict[str, Any]]:
        slot = record["slot"]
        trial = boot.slots[slot]
        if record["phase"] == SWITCHING and boot.primary == slot and trial.tries > 0:
            # The switch reached the env; the slot was verified before it began.
            record = {**record, "phase": INSTALLED, "installed": _now()}
            self.journal.save(record)
            return boot, record
        if trial.bootable or boot.primary == slot:
            boot = boot.mark_bad(slot)
            self.bootenv.save_state(boot)
        reason = (
            f"install into slot {slot} was interrupted while {record['phase']}; "
            f"slot {slot} is marked bad"
        )
        kept = record.get("resume") if record["phase"] == WRITING else None
        point = ResumePoint.from_dict(kept)
        if point is not None:
            reason += f"; its first {point.offset} bytes are kept for a resume"
        log.warning("%s", reason)
        record = {"phase": FAILED, "slot": slot, "reason": reason, "at": _now()}
        if point is not None:
            record["resume"] = kept
        self.journal.save(record)
        return boot, record

    def _record_rollback(
        self, boot: BootState, record: dict[str, Any], reason: str
    ) -> dict[str, Any]:
        rollback = {
            "phase": ROLLED_BACK,
            "slot": record["slot"],
            "sha256": record.get("sha256"),
            "reason": reason,
            "at": _now(),
        }
        self.journal.save(rollback)
        log.error("rollback: %s", reason)
        return rollback

    @staticmethod
    def _state(booted: str, boot: BootState, record: dict[str, Any] | None) -> NodeState:
        phase = record.get("phase") if record else None
        if phase == ROLLED_BACK:
            return NodeState.ROLLED_BACK
        if not boot.slots[booted].ok:
            if boot.primary != booted and not boot.slots[booted].tries:
                return NodeState.REVERTING
            return NodeState.TRYING
        if boot.primary != booted:
            if boot.slots[boot.primary].bootable:
                return NodeState.INSTALLED
            return NodeState.IDLE
        if phase == REVERTING:
            return NodeState.REVERTING
        return NodeState.IDLE

    def _view(
        self,
        booted: str,
        boot: BootState,
        record: dict[str, Any] | None,
        *,
        running: bool = False,
        notes: list[str] | None = None,
    ) -> NodeStatus:
        phase = record.get("phase") if record else None
        state = NodeState.INSTALLING if running else self._state(booted, boot, record)
        slots = [
            SlotView(
                name=slot,
                device=str(self.config.device(slot)),
                booted=slot == booted,
                primary=slot == boot.primary,
                committed=boot.slots[slot].ok,
                tries=boot.slots[slot].tries,
            )
            for slot in SLOTS
        ]
        install = record if phase in (WRITING, SWITCHING, INSTALLED) else None
        return NodeStatus(
            state=state,
            booted=booted,
            primary=boot.primary,
            slots=slots,
            install=install,
            rollback=record if phase == ROLLED_BACK else None,
            last_error=record["reason"] if phase == FAILED and record else None,
            notes=notes or [],
        )


class _ResumeJournal:
    """Saves the ``writing`` record with the latest durable offset (from the writing thread).

    A checkpoint that cannot be saved (state disk full) is logged and
    skipped: the older point on disk is still true, it only resumes from
    further back. Dropping the point (None) must reach the disk, though:
    the slot's prefix is about to be overwritten.
    """

    def __init__(self, journal: Journal, intent: dict[str, Any], device: Path) -> None:
        self._journal = journal
        self._intent = intent
        self._device = device
        self.kept: dict[str, Any] | None = None
        """The ``resume`` entry last saved, for the ``failed`` record."""

    def save(self, point: ResumePoint | None) -> None:
        entry = None
        if point is not None:
            entry = {
                **point.to_dict(),
                "sha256": self._intent["sha256"],
                "size": self._intent["size"],
                "device": str(self._device),
            }
        record = {**self._intent, "phase": WRITING}
        if entry is not None:
            record["resume"] = entry
        self._journal.save(record)
        self.kept = entry

    def checkpoint(self, point: ResumePoint | None) -> None:
        if point is None:
            self.save(None)
            return
        try:
            self.save(point)
        except StateWriteError as exc:
            log.warning("resume point at byte %d not saved: %s", point.offset, exc)


def _resume_point(
    record: dict[str, Any] | None, slot: str, device: Path, sha256: str, size: int | None
) -> ResumePoint | None:
    """The point an interrupted install of this very image into this slot left, else None.

    Same image = same sha256 and a known, equal size; same slot = same slot
    name and device path. Only a ``writing`` (not yet settled) or ``failed``
    record carries one.
    """
    if not record or record.get("phase") not in (WRITING, FAILED) or size is None:
        return None
    entry = record.get("resume")
    if not isinstance(entry, dict) or record.get("slot") != slot:
        return None
    if entry.get("sha256") != sha256 or entry.get("size") != size:
        return None
    if entry.get("device") != str(device):
        return None
    point = ResumePoint.from_dict(entry)
    if point is None or point.offset >= size:
        return None
    return point


def _source_failed(exc: BaseException) -> bool:
    """Whether a failed install stopped because of its source, leaving the slot's prefix good.

    A transfer that gave up or was cancelled did; a file that changed on the
    server, a slot that failed to write and an image that did not verify did
    not (the prefix may be wrong).
    """
    return isinstance(exc, TransferError) and not isinstance(exc, SourceChanged)


def _is_block(path: Path) -> bool:
    try:
        return stat.S_ISBLK(path.stat().st_mode)
    except OSError:
        return False


def _device_length(path: Path) -> int | None:
    """A block device's size or a regular file's length; None if it cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.seek(0, os.SEEK_END)
    except OSError:
        return None


def _check_sha256(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InstallRefused(f"sha256 {value!r}: expected 64 hexadecimal digits")
    return value


__all__ = ["SlotManager"]
