"""The Master's port to one Sub OTA over SOME/IP: ask where it stands, do only what is missing.

Commands on the wire are not idempotent (docs/someip.md §6): a repeated
Install is refused with WRONG_STATE, and the datagram that was lost may be
the answer to a command the Sub did carry out. So every operation here is a
loop: read the Sub's status (GetStatus is the truth, events only a hint),
send the one command that is still missing, wait for the state it leads to,
and read again. A timeout or a WRONG_STATE is never a verdict by itself —
only a state the Sub reports is. That is what lets the engine re-run any
phase after the Master was killed at any instant.

Status ``seq`` grows with every transition and survives the Sub's reboots
(it is journaled), so "a status newer than the one I acted on" tells a fresh
answer from a stale event.

Where a Sub stands (:func:`standing_of`), by its reported state:

========================  ==========================================  ===========
state                     condition                                   standing
========================  ==========================================  ===========
Idle/Committed/           ``Info.current_target`` is the new target   NEW
RolledBack/Failed         otherwise                                   OLD
Ready                     status target is the new target             INSTALLED
Ready                     another target (a foreign, unused install)  OLD
Transferring/Processing   the new target / another target             INSTALLING / OLD
Activating                the new target (switch under way)           INSTALLED
Verifying                 new target, detail "...; awaiting commit"   TRIAL
Verifying                 new target, health check still running      INSTALLED
Activating/Verifying      another target                              FAILED
RollingBack               (rebooting back to the old slot)            FAILED
========================  ==========================================  ===========

Failed is OLD on purpose: the Sub enters it only from Transferring/Processing
(the inactive slot failed to download or verify) or after losing its journal,
and in both cases the running slot was never switched — the slot layer never
primes an unverified slot — so the committed image (``current_target``) still
runs. RollingBack is FAILED ("neither settled old nor new"): the engine's
answer to that, :meth:`SubPort.rollback`, simply waits for RolledBack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from redstone_agent.master.errors import EcuFailed, EcuUnreachable
from redstone_agent.master.ports import EcuJob, EcuStanding, ProgressFn, StepResult
from redstone_agent.master.topology import EcuSpec, TimeoutSettings
from redstone_agent.someip.client import SubClient
from redstone_agent.someip.errors import CallTimeout, RemoteError, ServiceUnavailable, SomeIpError
from redstone_agent.someip.interface import ResultCode, SubState
from redstone_agent.someip.messages import DeltaInfo, InstallRequest, Progress, Status

log = logging.getLogger(__name__)
S = SubState
T = TypeVar("T")

SETTLED = frozenset({S.IDLE, S.COMMITTED, S.ROLLED_BACK, S.FAILED})
"""States in which the Sub runs its committed image and nothing is under way."""
BUSY = frozenset({S.TRANSFERRING, S.PROCESSING})
QUERY_WAIT_S = 60.0
"""How long manifest()/standing() keep asking a Sub that does not answer (a reboot)."""
RETRY_S = 0.2
"""Pause before asking again after a call timed out or the offer was missing."""
AWAITING_COMMIT = "awaiting commit"
"""The Sub's Verifying detail once its health check passed (docs/someip.md §6)."""


def healthy_trial(status: Status) -> bool:
    """Verifying and the health check passed: Commit is allowed."""
    return status.state is S.VERIFYING and status.detail.endswith(AWAITING_COMMIT)


def standing_of(status: Status, current_target: str, target: str) -> EcuStanding:
    """Where the Sub stands with respect to ``target`` (the table in the module docstring)."""
    ours = status.target == target
    state = status.state
    if state in SETTLED:
        return EcuStanding.NEW if current_target == target else EcuStanding.OLD
    if state is S.READY:
        return EcuStanding.INSTALLED if ours else EcuStanding.OLD
    if state in BUSY:
        return EcuStanding.INSTALLING if ours else EcuStanding.OLD
    if state is S.ACTIVATING and ours:
        return EcuStanding.INSTALLED
    if state is S.VERIFYING and ours:
        return EcuStanding.TRIAL if healthy_trial(status) else EcuStanding.INSTALLED
    return EcuStanding.FAILED


def install_request(job: EcuJob) -> InstallRequest:
    """The Install command for ``job``: the full image, and the delta when there is one."""
    new, delta = job.new, job.delta
    return InstallRequest(
        target=new.target,
        url=new.url,
        sha256=bytes.fromhex(new.sha256),
        length=new.length,
        delta=None
        if delta is None
        else DeltaInfo(
            url=delta.url,
            sha256=bytes.fromhex(delta.sha256),
            length=delta.length,
            source_sha256=bytes.fromhex(delta.source_sha256),
        ),
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def failure(code: ResultCode | int, detail: str) -> str:
    """``VERIFICATION_FAILED: metadata rejected: ...`` — the Sub's own words, one line."""
    try:
        name = ResultCode(code).name
    except ValueError:
        name = f"result code {int(code)}"
    return one_line(f"{name}: {detail}" if detail else name)


def deadline_after(seconds: float) -> float:
    return time.monotonic() + seconds


class SubCalls:
    """Calls to a Sub for the port of ECU ``serial`` (the Sub itself, or an ECU ``via`` it):
    queries asked again until a deadline, commands whose answer may be lost, and
    every failure one line (:class:`EcuFailed` or :class:`EcuUnreachable`)."""

    def __init__(self, serial: str, *, via: str = "") -> None:
        self.serial = serial
        self._to = f" to Sub {via}" if via else ""

    async def ask(self, what: str, call: Callable[[], Awaitable[T]], deadline: float) -> T:
        """A query, asked again through timeouts and the Sub's reboots until ``deadline``."""
        while True:
            try:
                return await call()
            except (CallTimeout, ServiceUnavailable) as exc:
                if time.monotonic() > deadline:
                    raise EcuUnreachable(
                        self.serial, f"{what}{self._to} unanswered: {exc}"
                    ) from None
                await asyncio.sleep(RETRY_S)
            except RemoteError as exc:
                raise EcuFailed(self.serial, f"{what}: {failure(exc.code, exc.detail)}") from None
            except SomeIpError as exc:
                raise EcuFailed(self.serial, f"{what}: {one_line(str(exc))}") from None

    async def command(
        self, what: str, call: Callable[[], Awaitable[None]], deadline: float
    ) -> bool:
        """Send a command: True if accepted; False if the answer is unknown or WRONG_STATE
        (the caller reads the status and decides again); EcuFailed if refused."""
        if time.monotonic() > deadline:
            raise EcuUnreachable(self.serial, f"{what} not carried out in time")
        try:
            await call()
        except (CallTimeout, ServiceUnavailable) as exc:
            log.info("%s: %s unanswered (%s); reading the status", self.serial, what, exc)
            await asyncio.sleep(RETRY_S)
            return False
        except RemoteError as exc:
            if exc.code == ResultCode.WRONG_STATE:
                log.info("%s: %s refused in this state; reading the status", self.serial, what)
                return False
            raise EcuFailed(self.serial, failure(exc.code, exc.detail)) from None
        except SomeIpError as exc:
            raise EcuFailed(self.serial, f"{what}: {one_line(str(exc))}") from None
        return True

    def manifest(self, raw: bytes) -> dict[str, Any]:
        """The signed manifest the Sub sent: a JSON object, else EcuFailed."""
        try:
            envelope = json.loads(raw)
        except ValueError as exc:
            raise EcuFailed(self.serial, f"manifest is not JSON: {exc}") from None
        if not isinstance(envelope, dict):
            raise EcuFailed(self.serial, "manifest is not a JSON object")
        return envelope


class SubPort:
    """One Sub as the campaign engine sees it (an :class:`EcuPort`)."""

    def __init__(self, spec: EcuSpec, client: SubClient, timeouts: TimeoutSettings) -> None:
        self.serial = spec.serial
        self._spec = spec
        self._client = client
        self._timeouts = timeouts
        self._progress: ProgressFn | None = None
        self._calls = SubCalls(spec.serial)
        client.on_progress(self._forward_progress)

    # -- queries -------------------------------------------------------------

    async def manifest(self, nonce: str) -> dict[str, Any]:
        deadline = deadline_after(QUERY_WAIT_S)
        raw = await self._calls.ask(
            "GetManifest", lambda: self._client.get_manifest(nonce.encode()), deadline
        )
        return self._calls.manifest(raw)

    async def standing(self, job: EcuJob) -> EcuStanding:
        deadline = deadline_after(QUERY_WAIT_S)
        status = await self._status(deadline)
        current = await self._current(deadline) if status.state in SETTLED else ""
        return standing_of(status, current, job.new.target)

    # -- install -------------------------------------------------------------

    async def install(self, job: EcuJob, progress: ProgressFn) -> StepResult:
        """Metadata, Install, wait for Ready; a Ready (or later) Sub is left alone."""
        deadline = deadline_after(self._timeouts.install_s)
        target = job.new.target
        request = install_request(job)

        async def install() -> None:
            await self._client.install(request)

        sent: int | None = None
        """seq before our Install went out: a Failed/Idle newer than it is our attempt's end."""
        self._progress = progress
        try:
            while True:
                status = await self._status(deadline)
                state, ours = status.state, status.target == target
                if ours and state in (S.READY, S.ACTIVATING, S.VERIFYING):
                    return self._installed(
                        job, "installed" if sent is not None else "already installed"
                    )
                if sent is not None and status.seq > sent and state in (S.FAILED, S.IDLE):
                    raise EcuFailed(self.serial, failure(status.error, status.detail))
                if state in SETTLED:
                    if await self._current(deadline) == target:
                        return StepResult(detail=f"already runs {target} (committed)")
                    if not await self._put_metadata(job, deadline):
                        continue
                    if await self._calls.command("Install", install, deadline):
                        sent = status.seq
                        await self._wait_after(status, {S.READY, S.FAILED, S.IDLE}, deadline)
                    elif sent is None:
                        sent = status.seq  # unknown whether it arrived: the next status tells
                elif state in BUSY and ours:
                    await self._wait_after(status, {S.READY, S.FAILED, S.IDLE}, deadline)
                elif state in BUSY or state is S.READY:
                    log.info("%s: discarding a pending install of %s", self.serial, status.target)
                    if await self._calls.command("Cancel", self._client.cancel, deadline):
                        await self._wait_after(status, SETTLED | {S.READY}, deadline)
                elif state is S.ROLLING_BACK:
                    await self._wait_after(status, SETTLED, deadline)
                else:
                    raise EcuFailed(
                        self.serial, f"busy with {status.target} ({state.name}), not {target}"
                    )
        finally:
            self._progress = None

    def _installed(self, job: EcuJob, detail: str) -> StepResult:
        if job.delta is not None:
            return StepResult(detail=detail, bytes_sent=job.delta.length, used_delta=True)
        return StepResult(detail=detail, bytes_sent=job.new.length)

    async def _put_metadata(self, job: EcuJob, deadline: float) -> bool:
        """Forward the verified bundle; the Sub verifies it itself (and may refuse it).
        Repeating it is harmless: the Sub just verifies the same bundle again."""

        async def send() -> None:
            if job.bundle_url:
                await self._client.put_metadata_from(job.bundle_url, job.bundle)
            else:
                await self._client.put_metadata(job.bundle)

        return await self._calls.command("PutMetadata", send, deadline)

    # -- activate / commit ---------------------------------------------------

    async def activate(self, job: EcuJob) -> StepResult:
        """Activate (the Sub reboots) and wait for a healthy trial boot."""
        deadline = deadline_after(self._timeouts.activate_s)
        target = job.new.target
        # READY again: the Sub was cut off before it switched the bootloader (docs/someip.md §7).
        after_trial = {S.READY, S.VERIFYING, S.ROLLING_BACK, S.ROLLED_BACK, S.FAILED, S.COMMITTED}
        while True:
            status = await self._status(deadline)
            state, ours = status.state, status.target == target
            if ours and healthy_trial(status):
                return StepResult(detail=one_line(status.detail))
            if ours and state in (S.ACTIVATING, S.VERIFYING):
                await self._wait_after(status, after_trial, deadline, until=_not_checking)
            elif ours and state is S.READY:
                if await self._calls.command("Activate", self._client.activate, deadline):
                    await self._wait_after(status, after_trial, deadline, until=_not_checking)
            elif state in (S.ROLLING_BACK, S.ROLLED_BACK):
                raise EcuFailed(self.serial, failure(status.error, status.detail))
            elif state in SETTLED and await self._current(deadline) == target:
                return StepResult(detail=f"already committed {target}")
            else:
                raise EcuFailed(self.serial, f"cannot activate {target} in {_describe(status)}")

    async def commit(self, job: EcuJob) -> StepResult:
        """Commit a healthy trial; a Sub already committed on the new target is left alone."""
        deadline = deadline_after(self._timeouts.activate_s)
        target = job.new.target
        while True:
            status = await self._status(deadline)
            state, ours = status.state, status.target == target
            if state in SETTLED and await self._current(deadline) == target:
                return StepResult(detail=f"committed {target}")
            if ours and healthy_trial(status):
                if await self._calls.command("Commit", self._client.commit, deadline):
                    await self._wait_after(
                        status, SETTLED | {S.ROLLING_BACK}, deadline, until=_not_checking
                    )
            elif ours and state in (S.ACTIVATING, S.VERIFYING):
                await self._wait_after(
                    status, {S.VERIFYING} | SETTLED, deadline, until=_not_checking
                )
            elif state in (S.ROLLING_BACK, S.ROLLED_BACK):
                raise EcuFailed(self.serial, failure(status.error, status.detail))
            else:
                raise EcuFailed(self.serial, f"cannot commit {target} in {_describe(status)}")

    # -- rollback ------------------------------------------------------------

    async def rollback(self, job: EcuJob) -> StepResult:
        """Back to the old image from any state before commit (never after: no such method)."""
        deadline = deadline_after(self._timeouts.rollback_s)
        target = job.new.target
        while True:
            status = await self._status(deadline)
            state = status.state
            if state in SETTLED:
                current = await self._current(deadline)
                if current == target:
                    raise EcuFailed(
                        self.serial,
                        f"runs the committed {target}: a committed Sub cannot be rolled back "
                        "over SOME/IP (there is no method for it)",
                    )
                return StepResult(detail=f"runs {current or 'its factory image'}")
            if state is S.READY or state is S.VERIFYING:
                if await self._calls.command("Rollback", self._client.rollback, deadline):
                    await self._wait_after(status, SETTLED, deadline)
            elif state in BUSY:
                if await self._calls.command("Cancel", self._client.cancel, deadline):
                    await self._wait_after(status, SETTLED | {S.READY}, deadline)
            else:  # ACTIVATING (no command allowed) or ROLLING_BACK: let it settle
                await self._wait_after(status, SETTLED | {S.READY, S.VERIFYING}, deadline)

    # -- the wire ------------------------------------------------------------

    def _forward_progress(self, progress: Progress) -> None:
        if self._progress is not None:
            self._progress(progress.bytes_done, progress.bytes_total)

    async def _status(self, deadline: float) -> Status:
        return await self._calls.ask("GetStatus", self._client.get_status, deadline)

    async def _current(self, deadline: float) -> str:
        """The committed image's target name (GetInfo)."""
        info = await self._calls.ask("GetInfo", self._client.get_info, deadline)
        return info.current_target

    async def _wait_after(
        self,
        seen: Status,
        states: Collection[SubState],
        deadline: float,
        *,
        until: Callable[[Status], bool] = lambda _status: True,
    ) -> Status:
        """Wait for a status newer than ``seen`` in ``states`` (events or polling)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise EcuFailed(self.serial, f"timed out in {_describe(seen)}")
        try:
            return await self._client.wait_for_state(
                states, left, until=lambda s: s.seq > seen.seq and until(s)
            )
        except SomeIpError as exc:
            raise EcuFailed(self.serial, f"timed out: {one_line(str(exc))}") from None


def _not_checking(status: Status) -> bool:
    """A Verifying status counts only once its health check has passed."""
    return status.state is not S.VERIFYING or healthy_trial(status)


def _describe(status: Status) -> str:
    detail = f" ({one_line(status.detail)})" if status.detail else ""
    return f"state {status.state.name} of {status.target or 'no target'}{detail}"
