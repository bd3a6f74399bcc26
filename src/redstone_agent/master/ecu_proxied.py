"""The Master's port to a UDS ECU that a Sub flashes on its behalf (``behind`` in master.toml).

The Sub owns the ECU's bus; the Master reaches the ECU through the Sub's 1.1
methods (docs/someip.md §11): GetProxiedStatus, ProxyManifest, ProxyInstall,
ProxyRollback. To the campaign it is a UDS ECU like any other: the flash
programs, resets and verifies in one go, so activate and commit have nothing
left to do, and a rollback flashes the previous image back.

Every operation first checks that the Sub can do it at all — GetInfo says
interface minor >= 1 and lists the serial — and refuses with one line
otherwise, before any proxied call. Then, as :class:`SubPort` does, it reads
where the ECU stands (GetProxiedStatus is the truth, PROXIED_STATUS events a
hint), sends the one command still missing and waits for the state it leads
to; a timeout or WRONG_STATE is never a verdict, only a state the Sub reports.
The Sub journals every transition and resumes after a restart; this port
resumes after the Master's.

Where the ECU stands (:func:`standing_of`), from the ProxiedStatus:

==========================  ========================================  ===========
state                       condition                                 standing
==========================  ========================================  ===========
Downloading / Flashing      the job's new target                      INSTALLING
Downloading                 another target (ECU untouched)            by version
Flashing                    another target                            FAILED
RollingBack                                                           FAILED
settled                     version = the new image's                 NEW
settled                     version = the previous image's, or no     OLD
                            previous image is known
settled                     another version, or none (bootloader)     FAILED
==========================  ========================================  ===========
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from redstone_agent.master.ecu_sub import (
    QUERY_WAIT_S,
    SubCalls,
    deadline_after,
    failure,
    one_line,
)
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import EcuJob, EcuStanding, Image, ProgressFn, StepResult
from redstone_agent.master.topology import EcuSpec, TimeoutSettings
from redstone_agent.someip.client import SubClient
from redstone_agent.someip.errors import RemoteError, SomeIpError
from redstone_agent.someip.interface import (
    PROXIED_SETTLED,
    PROXY_MINOR,
    ProxiedState,
    ResultCode,
)
from redstone_agent.someip.messages import (
    MetadataLocation,
    ProxiedImage,
    ProxiedStatus,
    ProxyInstallRequest,
)

P = ProxiedState


def standing_of(status: ProxiedStatus, job: EcuJob) -> EcuStanding:
    """Where the ECU stands with respect to ``job`` (the table in the module docstring)."""
    ours = status.target == job.new.target
    if status.state in (P.DOWNLOADING, P.FLASHING) and ours:
        return EcuStanding.INSTALLING
    if status.state in (P.FLASHING, P.ROLLING_BACK):
        return EcuStanding.FAILED
    version = status.version
    if not version:
        return EcuStanding.FAILED
    if version == job.new.version:
        return EcuStanding.NEW
    if job.previous is None or version == job.previous.version:
        return EcuStanding.OLD
    return EcuStanding.FAILED


def proxied_image(image: Image) -> ProxiedImage:
    return ProxiedImage(
        image.target,
        image.url,
        bytes.fromhex(image.sha256),
        image.length,
        image.version,
        image.release_counter,
    )


def install_request(serial: str, job: EcuJob) -> ProxyInstallRequest:
    """ProxyInstall for ``job``: the bundle by its location in the cache, both images."""
    if not job.bundle_url or not job.bundle:
        raise EcuFailed(serial, "no metadata bundle in the cache to forward to the Sub")
    metadata = MetadataLocation(
        job.bundle_url, hashlib.sha256(job.bundle).digest(), len(job.bundle)
    )
    previous = None if job.previous is None else proxied_image(job.previous)
    return ProxyInstallRequest(serial, metadata, proxied_image(job.new), previous)


def _settled_after(seq: int) -> Callable[[ProxiedStatus], bool]:
    return lambda status: status.seq > seq and status.state in PROXIED_SETTLED


class ProxiedPort:
    """One UDS ECU behind a Sub, as the campaign engine sees it (an :class:`EcuPort`)."""

    def __init__(self, spec: EcuSpec, client: SubClient, timeouts: TimeoutSettings) -> None:
        self.serial = spec.serial
        self.sub = spec.behind
        self._client = client
        self._timeouts = timeouts
        self._progress: ProgressFn | None = None
        self._calls = SubCalls(spec.serial, via=spec.behind)
        client.on_proxied(self._forward_progress)

    # -- queries -------------------------------------------------------------

    async def manifest(self, nonce: str) -> dict[str, Any]:
        deadline = deadline_after(QUERY_WAIT_S)
        await self._check_sub(deadline)
        raw = await self._calls.ask(
            "ProxyManifest",
            lambda: self._client.proxy_manifest(self.serial, nonce.encode()),
            deadline,
        )
        return self._calls.manifest(raw)

    async def standing(self, job: EcuJob) -> EcuStanding:
        deadline = deadline_after(QUERY_WAIT_S)
        await self._check_sub(deadline)
        return standing_of(await self._status(deadline, refresh=True), job)

    # -- steps ---------------------------------------------------------------

    async def install(self, job: EcuJob, progress: ProgressFn) -> StepResult:
        """ProxyInstall and wait until the Sub settles; an ECU on the new image is left alone."""
        deadline = deadline_after(self._timeouts.install_s)
        await self._check_sub(deadline)
        new = job.new
        request = install_request(self.serial, job)
        sent: int | None = None
        """seq when our attempt was under way: the next settled status is its verdict."""
        self._progress = progress
        try:
            status = await self._status(deadline, refresh=True)
            while True:
                state, ours = status.state, status.target == new.target
                settled = state in PROXIED_SETTLED
                if settled and sent is not None and status.seq > sent:
                    if state is P.INSTALLED and ours and status.version == new.version:
                        return StepResult(detail=one_line(status.detail), bytes_sent=new.length)
                    raise EcuFailed(self.serial, failure(status.error, status.detail))
                if settled and status.version == new.version:
                    return StepResult(detail=f"already runs {new.version}")
                if settled:
                    if await self._calls.command(
                        "ProxyInstall", lambda: self._client.proxy_install(request), deadline
                    ):
                        sent = status.seq
                        status = await self._wait(sent, deadline)
                    else:
                        if sent is None:
                            sent = status.seq  # unknown whether it arrived: the status tells
                        status = await self._status(deadline)
                    continue
                if ours and sent is None:
                    sent = status.seq  # our earlier attempt (before a restart) is under way
                status = await self._wait(status.seq, deadline)
        finally:
            self._progress = None

    async def activate(self, job: EcuJob) -> StepResult:
        """Nothing to do: the flash already reset the ECU and verified the new image."""
        return StepResult(detail=f"runs {job.new.version}")

    async def commit(self, job: EcuJob) -> StepResult:
        """Nothing to do: a UDS ECU has no trial state to leave."""
        return StepResult(detail=f"runs {job.new.version}")

    async def rollback(self, job: EcuJob) -> StepResult:
        """ProxyRollback unless the ECU already runs its previous image; a flash under way
        is waited for, never cut off."""
        deadline = deadline_after(self._timeouts.rollback_s)
        await self._check_sub(deadline)
        sent: int | None = None
        while True:
            status = await self._status(deadline, refresh=True)
            if status.state not in PROXIED_SETTLED:
                await self._wait(status.seq, deadline)
                continue
            standing = standing_of(status, job)
            if standing is EcuStanding.OLD:
                return StepResult(detail=f"runs {status.version}")
            if sent is not None and status.seq > sent:
                why = failure(status.error, status.detail)
                if status.error is ResultCode.OK:
                    why = f"rolled back but runs {status.version or 'no readable version'}"
                raise EcuFailed(self.serial, why)
            if await self._calls.command(
                "ProxyRollback", lambda: self._client.proxy_rollback(self.serial), deadline
            ):
                sent = status.seq
                await self._wait(status.seq, deadline)
            elif sent is None:
                sent = status.seq

    # -- the wire ------------------------------------------------------------

    async def _check_sub(self, deadline: float) -> None:
        """Refuse, in one line, a Sub that cannot flash this ECU for us."""
        info = await self._calls.ask("GetInfo", self._client.get_info, deadline)
        if info.interface_minor < PROXY_MINOR:
            raise EcuFailed(
                self.serial,
                f"behind Sub {self.sub}, which speaks SOME/IP interface 1.{info.interface_minor}"
                f" and cannot flash UDS ECUs for the Master (needs 1.{PROXY_MINOR}): "
                "topology refused",
            )
        if self.serial not in info.proxied:
            flashes = ", ".join(info.proxied) or "none"
            raise EcuFailed(
                self.serial,
                f"Sub {self.sub} does not flash this ECU (its [[sub.uds-ecus]]: {flashes}): "
                "topology refused",
            )

    def _forward_progress(self, status: ProxiedStatus) -> None:
        flashing = status.state is P.FLASHING and status.bytes_total > 0
        if self._progress is not None and status.serial == self.serial and flashing:
            self._progress(status.bytes_done, status.bytes_total)

    async def _status(self, deadline: float, *, refresh: bool = False) -> ProxiedStatus:
        return await self._calls.ask(
            "GetProxiedStatus",
            lambda: self._client.get_proxied_status(self.serial, refresh=refresh),
            deadline,
        )

    async def _wait(self, seq: int, deadline: float) -> ProxiedStatus:
        """The first status newer than ``seq`` that is settled (events or polling)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise EcuFailed(self.serial, f"timed out behind Sub {self.sub}")
        try:
            return await self._client.wait_for_proxied(self.serial, left, _settled_after(seq))
        except RemoteError as exc:
            raise EcuFailed(self.serial, failure(exc.code, exc.detail)) from None
        except SomeIpError as exc:
            raise EcuFailed(self.serial, f"timed out: {one_line(str(exc))}") from None
