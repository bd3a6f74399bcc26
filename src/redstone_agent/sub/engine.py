"""The Sub's update state machine, journaled so power loss at any instant is survivable.

Write-ahead: every transition is saved to the journal *before* the step it
announces (writing the slot, switching the bootloader, rebooting), so
:meth:`Engine.recover` can tell after a restart what was under way and finish
or undo it. The slot layer, trust checks, health check and reboot are
injected; this module decides only *what* happens *when*.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from redstone_agent.journal import Journal, JournalCorrupt, StateWriteError
from redstone_agent.retry import RetryPolicy
from redstone_agent.slots.scheme import other_slot
from redstone_agent.someip.interface import ResultCode, SubState
from redstone_agent.someip.messages import Info, InstallRequest, Progress, Status
from redstone_agent.sub.errors import SubError, wire_text
from redstone_agent.sub.slots_port import DeltaSource, Slots
from redstone_agent.sub.states import Command, require
from redstone_agent.sub.trust import Assignment, SubTrust, check_install
from redstone_agent.transfer import TransferError, open_source

log = logging.getLogger(__name__)
S = SubState

HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]
Reboot = Callable[[], Awaitable[None]]
PROGRESS_STEP = 1 << 20
"""Emit a PROGRESS event at most once per MiB written."""
REBOOT_DELAY_S = 0.3
MARK_BAD_RETRY = RetryPolicy(attempts=8, base_delay=1.0, max_delay=60.0)
"""Marking a failed trial slot bad: 8 tries over at most a few minutes, then reboot anyway."""


@dataclass
class Record:
    """Everything the Sub must remember across a reboot (the journal's content)."""

    state: SubState = S.IDLE
    seq: int = 0
    current: str = ""
    """Target name of the committed image ("" for the factory image)."""
    current_length: int = 0
    current_sha256: str = ""
    """Length and hash of the committed *image* (for a delta: what it built)."""
    release_counter: int = 0
    assignment: dict[str, Any] | None = None
    request: dict[str, Any] | None = None
    to_slot: str = ""
    switched: bool = False
    """The bootloader was pointed at ``to_slot`` (ACTIVATING)."""
    health_ok: bool = False
    error: ResultCode = ResultCode.OK
    detail: str = ""
    bytes_done: int = 0
    bytes_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["state"] = self.state.name
        data["error"] = self.error.name
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        fields = dict(data)
        fields["state"] = SubState[fields["state"]]
        fields["error"] = ResultCode[fields["error"]]
        return cls(**fields)


def _request_to_dict(request: InstallRequest) -> dict[str, Any]:
    delta = request.delta
    return {
        "target": request.target,
        "url": request.url,
        "sha256": request.sha256.hex(),
        "length": request.length,
        "delta": None
        if delta is None
        else {
            "url": delta.url,
            "sha256": delta.sha256.hex(),
            "length": delta.length,
            "source_sha256": delta.source_sha256.hex(),
        },
    }


@dataclass
class Hooks:
    """How the engine reaches the outside world."""

    publish: Callable[[Status], None] = lambda _status: None
    progress: Callable[[Progress], None] = lambda _progress: None
    reboot: Reboot | None = None
    health: HealthCheck | None = None
    sign_manifest: Callable[[dict[str, Any]], bytes] | None = None
    auto_commit: bool = False


class Engine:
    """One Sub's update lifecycle. All public coroutines run on the event loop."""

    def __init__(
        self,
        *,
        ecu_serial: str,
        hardware_id: str,
        slots: Slots,
        trust: SubTrust,
        journal: Journal,
        hooks: Hooks,
        mark_bad_retry: RetryPolicy = MARK_BAD_RETRY,
    ) -> None:
        self.ecu_serial = ecu_serial
        self.hardware_id = hardware_id
        self._slots = slots
        self._trust = trust
        self._journal = journal
        self._hooks = hooks
        self._mark_bad_retry = mark_bad_retry
        self._record = Record()
        self._cancel = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_progress = 0

    # -- observation ---------------------------------------------------------

    @property
    def state(self) -> SubState:
        return self._record.state

    def status(self) -> Status:
        r = self._record
        target = (r.request or {}).get("target", "") or r.current
        return Status(r.state, r.seq, target, r.bytes_done, r.bytes_total, r.error, r.detail)

    def info(self) -> Info:
        r = self._record
        pending = (r.request or {}).get("target", "")
        return Info(
            self.ecu_serial,
            self.hardware_id,
            self._slots.booted(),
            r.state,
            r.current,
            pending if r.state not in (S.COMMITTED, S.IDLE) else "",
        )

    def manifest(self, nonce: str) -> bytes:
        """The signed Uptane ECU version manifest, carrying the Master's nonce."""
        if self._hooks.sign_manifest is None:
            raise SubError("no ECU key configured: cannot sign a manifest")
        r = self._record
        fields = {
            "ecu_serial": self.ecu_serial,
            "filename": r.current,
            "length": r.current_length,
            "sha256": r.current_sha256,
            "release_counter": r.release_counter,
            "nonce": nonce,
            "attacks_detected": r.detail if r.error is ResultCode.VERIFICATION_FAILED else "",
            "report": {
                "hardware_id": self.hardware_id,
                "booted_slot": self._slots.booted(),
                "state": r.state.name,
                "result": r.error.name,
                "detail": r.detail,
            },
        }
        return self._hooks.sign_manifest(fields)

    # -- transitions ---------------------------------------------------------

    def _move(
        self,
        state: SubState,
        *,
        error: ResultCode = ResultCode.OK,
        detail: str = "",
        **changes: Any,
    ) -> None:
        """Persist the new state (write-ahead), then tell the Master.

        All or nothing: when the journal cannot be written (a full state
        filesystem) the state stays what it was and a one-line SubError says why.
        """
        r = replace(self._record, **changes)
        r.state, r.error, r.detail = state, error, wire_text(detail)
        r.seq += 1
        try:
            self._journal.save(r.to_dict())
        except StateWriteError as exc:
            raise SubError(f"cannot record state {state.name}: {exc}") from exc
        self._record = r
        note = detail if error is ResultCode.OK else f"{error.name}: {detail}".removesuffix(": ")
        log.info(
            "state %s%s",
            state.name,
            f" ({note})" if note else "",
            extra={
                "state": state.name,
                "seq": r.seq,
                "error": error.name,
                "target": (r.request or {}).get("target", r.current),
            },
        )
        self._hooks.publish(self.status())

    async def put_metadata(self, bundle: bytes) -> None:
        require(Command.PUT_METADATA, self.state)
        try:
            assignment = await asyncio.to_thread(
                self._trust.verify, bundle, self._record.release_counter
            )
            record = replace(self._record, assignment=assignment.to_dict())
            self._journal.save(record.to_dict())
        except StateWriteError as exc:
            raise SubError(f"verified metadata not kept: {exc}") from exc
        self._record = record
        log.info("metadata verified: assigned %s", assignment.filename)

    async def put_metadata_from(self, url: str, sha256: bytes, length: int) -> None:
        """PutMetadata for a bundle fetched from the Master's cache (size-capped, hashed)."""
        require(Command.PUT_METADATA, self.state)
        bundle = await asyncio.to_thread(fetch_exact, url, sha256, length)
        await self.put_metadata(bundle)

    async def install(self, request: InstallRequest) -> None:
        require(Command.INSTALL, self.state)
        raw = self._record.assignment
        check_install(Assignment.from_dict(raw) if raw else None, request)
        details = _request_to_dict(request)
        try:
            self._move(
                S.TRANSFERRING,
                request=details,
                to_slot=other_slot(self._slots.booted()),
                switched=False,
                health_ok=False,
                bytes_done=self._resume_offset(details),
                bytes_total=request.length,
            )
        except SubError as exc:
            raise SubError(f"install not started: {exc}", ResultCode.INSTALL_FAILED) from exc
        self._start_install()

    def _resume_offset(self, request: dict[str, Any] | None) -> int:
        """Where the slot layer will continue this install (0: from the start).

        Only a full image resumes; the slot layer keeps the durable offset in
        its own journal and decides again when the install runs.
        """
        if not request or request.get("delta"):
            return 0
        try:
            return self._slots.resume_offset(request["sha256"], request["length"])
        except Exception as exc:
            log.warning("cannot read the resume point: %s", exc)
            return 0

    def _start_install(self) -> None:
        self._cancel = threading.Event()
        self._last_progress = self._record.bytes_done
        self._task = asyncio.get_running_loop().create_task(self._run_install())

    async def _run_install(self) -> None:
        request = self._record.request
        assert request is not None
        delta = request["delta"]
        loop = asyncio.get_running_loop()

        def progress(done: int) -> None:
            loop.call_soon_threadsafe(self._on_progress, done)

        try:
            await asyncio.to_thread(
                self._slots.install,
                request["url"],
                sha256=request["sha256"],
                size=request["length"],
                progress=progress,
                cancel=self._cancel,
                delta=DeltaSource(**delta) if delta else None,
            )
        except Exception as exc:
            if self._cancel.is_set():
                self._move(S.IDLE, error=ResultCode.CANCELLED, detail="install cancelled")
            else:
                code = _failure_code(exc)
                log.warning("install failed: %s", exc)
                self._move(S.FAILED, error=code, detail=str(exc))
            return
        self._move(S.PROCESSING, bytes_done=request["length"])
        self._move(S.READY, detail=f"{request['target']} installed in slot {self._record.to_slot}")

    def _on_progress(self, done: int) -> None:
        r = self._record
        r.bytes_done = done
        if done - self._last_progress >= PROGRESS_STEP or done >= r.bytes_total:
            self._last_progress = done
            self._hooks.progress(Progress(r.seq, done, r.bytes_total))

    async def activate(self) -> None:
        require(Command.ACTIVATE, self.state)
        self._move(S.ACTIVATING, detail=f"switching to slot {self._record.to_slot}")
        try:
            await asyncio.to_thread(self._slots.activate)
        except Exception as exc:
            # Nothing was switched (the slot layer refused): stay installed, say why.
            self._move(S.READY, error=_failure_code(exc), detail=f"activation refused: {exc}")
            raise
        self._move(S.ACTIVATING, switched=True, detail="rebooting into the new slot")
        self._reboot_soon()

    async def commit(self) -> None:
        require(Command.COMMIT, self.state)
        if not self._record.health_ok:
            raise SubError("the new slot has not passed its health check", ResultCode.WRONG_STATE)
        await self._commit()

    async def _commit(self) -> None:
        await asyncio.to_thread(self._slots.mark_good)
        r = self._record
        assignment = r.assignment or {}
        request = r.request or {}
        # The manifest reports the image the slot holds: the request's
        # sha256/length, which the slot layer verified the written slot against.
        # For a full image they equal the assignment's (check_install); for a
        # delta they are the built image's, not the delta file's — the hash the
        # backend must see to offer the next delta from this image.
        self._move(
            S.COMMITTED,
            current=request.get("target", r.current),
            current_length=request.get("length", r.current_length),
            current_sha256=request.get("sha256", r.current_sha256),
            release_counter=assignment.get("release_counter", r.release_counter),
            assignment=None,
            detail="committed",
        )

    async def rollback(self) -> None:
        require(Command.ROLLBACK, self.state)
        if self.state is S.READY:
            await asyncio.to_thread(self._slots.discard)
            self._move(S.IDLE, request=None, detail="installed update discarded")
            return
        self._move(S.ROLLING_BACK, error=ResultCode.CANCELLED, detail="rollback requested")
        await self._mark_bad_then_reboot(
            ResultCode.CANCELLED, "rollback requested by the Master", REBOOT_DELAY_S
        )

    async def cancel(self) -> None:
        require(Command.CANCEL, self.state)
        if self.state is S.READY:
            await asyncio.to_thread(self._slots.discard)
            self._move(S.IDLE, request=None, error=ResultCode.CANCELLED, detail="cancelled")
            return
        self._cancel.set()

    async def _fall_back(self, error: ResultCode, detail: str) -> None:
        self._move(S.ROLLING_BACK, error=error, detail=detail)
        await self._mark_bad_then_reboot(error, detail, 0.0)

    async def _mark_bad_then_reboot(self, error: ResultCode, reason: str, delay: float) -> None:
        """Mark the booted slot bad and reboot; if that fails, keep trying in the background.

        The first attempt runs now. A failure (slot layer or bootloader env
        unwritable) must not leave the Sub in ROLLING_BACK for good: retries
        follow with backoff, each reported in the status detail, and when
        they are spent the Sub reboots anyway — the trial slot is uncommitted,
        so the bootloader's try counter returns to the old slot.
        """
        try:
            await asyncio.to_thread(self._slots.mark_bad, reason)
        except Exception as exc:
            log.warning("marking the slot bad failed: %s", exc)
            task = self._retry_mark_bad(error, reason, exc, delay)
            self._task = asyncio.get_running_loop().create_task(task)
            return
        if delay:
            self._reboot_soon()
        else:
            await self._reboot()

    async def _retry_mark_bad(
        self, error: ResultCode, reason: str, failure: Exception, delay: float
    ) -> None:
        total = self._mark_bad_retry.attempts
        attempt = 1
        for attempt, pause in enumerate(self._mark_bad_retry.delays(), start=2):
            self._report(
                error,
                f"{reason}; marking slot {self._record.to_slot} bad failed "
                f"(attempt {attempt - 1}/{total}: {failure}); retrying in {pause:.1f} s",
            )
            await asyncio.sleep(pause)
            try:
                await asyncio.to_thread(self._slots.mark_bad, reason)
            except Exception as exc:
                log.warning("marking the slot bad failed again: %s", exc)
                failure = exc
                continue
            self._report(error, f"{reason}; slot marked bad at attempt {attempt}: rebooting")
            break
        else:
            log.error("giving up marking the slot bad after %d attempts: %s", attempt, failure)
            self._report(
                error,
                f"{reason}; slot {self._record.to_slot} could not be marked bad ({failure}); "
                "rebooting: the bootloader's try counter returns to the old slot",
            )
        await asyncio.sleep(delay)
        await self._reboot()

    def _report(self, error: ResultCode, detail: str) -> None:
        """Journal and publish a ROLLING_BACK detail; a full disk only costs the journal line."""
        try:
            self._move(S.ROLLING_BACK, error=error, detail=detail)
        except SubError as exc:
            log.error("%s", exc)
            self._record.detail = wire_text(detail)
            self._hooks.publish(self.status())

    def _reboot_soon(self) -> None:
        """Reboot after the method response had time to leave (REBOOT_DELAY_S)."""

        async def later() -> None:
            await asyncio.sleep(REBOOT_DELAY_S)
            await self._reboot()

        self._task = asyncio.get_running_loop().create_task(later())

    async def _reboot(self) -> None:
        if self._hooks.reboot is not None:
            await self._hooks.reboot()

    # -- after a restart -----------------------------------------------------

    async def recover(self) -> None:
        """Resume or clean up whatever the journal says was under way."""
        try:
            saved = self._journal.load()
            record = Record.from_dict(saved) if saved is not None else None
        except (JournalCorrupt, KeyError, TypeError, ValueError) as exc:
            # The slot layer keeps its own journal and never boots a torn slot;
            # we only lost our bookkeeping: start over and say so.
            log.error("journal %s unreadable (%s): starting from FAILED", self._journal.path, exc)
            self._record = Record()
            self._move(S.FAILED, error=ResultCode.INTERNAL, detail=f"journal unreadable: {exc}")
            return
        if record is None:
            self._move(S.IDLE)
            return
        self._record = record
        r = self._record
        booted = self._slots.booted()
        log.info("recovering from %s (booted slot %s)", r.state.name, booted)
        pending = r.state in (S.TRANSFERRING, S.PROCESSING, S.READY, S.ACTIVATING)
        if pending and booted == r.to_slot:
            # The slot layer primes a slot only once it is written and verified,
            # so booting it means a (premature) trial: check it like any trial.
            await self._verify_new_slot()
        elif r.state in (S.TRANSFERRING, S.PROCESSING):
            offset = self._resume_offset(r.request)
            where = f"at byte {offset}" if offset else "from the start"
            self._move(
                S.TRANSFERRING, detail=f"resuming interrupted install {where}", bytes_done=offset
            )
            self._start_install()
        elif r.state is S.ACTIVATING:
            if not r.switched:
                self._move(S.READY, detail="activation interrupted before the switch")
            elif self._slots.trial_pending():
                self._move(S.ACTIVATING, detail="the reboot did not happen; rebooting again")
                self._reboot_soon()
            else:
                self._fallback_detected("the new slot did not boot; bootloader fell back")
        elif r.state is S.VERIFYING:
            if booted == r.to_slot:
                await self._verify_new_slot()
            else:
                self._fallback_detected("trial boot ended on the old slot")
        elif r.state is S.ROLLING_BACK:
            if booted == r.to_slot:
                await self._fall_back(r.error, r.detail)  # the reboot did not happen yet
            else:
                self._acknowledge()
                self._move(S.ROLLED_BACK, error=r.error, detail=r.detail, request=None)
        else:
            self._hooks.publish(self.status())

    def _acknowledge(self) -> None:
        """Clear the slot layer's rollback report; if that fails it only stays visible there."""
        try:
            self._slots.acknowledge()
        except Exception as exc:
            log.warning("could not clear the slot layer's rollback report: %s", exc)

    def _fallback_detected(self, detail: str) -> None:
        self._acknowledge()
        self._move(S.ROLLED_BACK, error=ResultCode.BOOT_FALLBACK, detail=detail, request=None)

    async def _verify_new_slot(self) -> None:
        self._move(S.VERIFYING, detail="running health check", health_ok=False)
        healthy, why = (
            (True, "healthy") if self._hooks.health is None else await self._hooks.health()
        )
        if not healthy:
            log.warning("health check failed: %s", why)
            await self._fall_back(ResultCode.HEALTH_CHECK_FAILED, why)
            return
        self._move(S.VERIFYING, health_ok=True, detail=f"{why}; awaiting commit")
        if self._hooks.auto_commit:
            await self._commit()

    async def close(self) -> None:
        """Stop a running install thread (it stays journaled and resumes on start)."""
        if self._task is not None and not self._task.done():
            self._cancel.set()
            self._task.cancel()


def fetch_exact(url: str, sha256: bytes, length: int) -> bytes:
    """Download exactly ``length`` bytes whose sha256 is ``sha256``, or raise SubError."""
    try:
        with open_source(url, max_bytes=length) as source:
            data = b"".join(source)
    except TransferError as exc:
        raise SubError(f"metadata download failed: {exc}", ResultCode.TRANSFER_FAILED) from exc
    if len(data) != length or not hmac.compare_digest(hashlib.sha256(data).digest(), sha256):
        raise SubError(
            f"metadata from {url} does not match the announced length/sha256",
            ResultCode.VERIFICATION_FAILED,
        )
    return data


def _failure_code(exc: BaseException) -> ResultCode:
    """TRANSFER_FAILED when the download gave up, the error's own code, else INSTALL_FAILED."""
    if isinstance(exc, SubError):
        return exc.code
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TransferError):
            return ResultCode.TRANSFER_FAILED
        cause = cause.__cause__
    return ResultCode.INSTALL_FAILED
