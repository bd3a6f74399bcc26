"""The TBox itself as a campaign member: its manifest and its own A/B rootfs slots.

The slots are the Sub's (``slots.SlotManager``, same ``[slots]`` shape, same
U-Boot/GRUB backends): ``install`` writes, verifies and primes the inactive
slot in one transaction (a delta from the cache is applied against the
running slot), ``activate`` only checks that the slot is primed — the engine
journals, then reboots (state *tbox-trial*) — and :meth:`SelfPort.boot` tells
the Master that comes up where the reboot left the TBox. Every answer comes
from the slot layer's own journal and the booted slot, never from memory, so
it is the same in the old and the new Master.

Without ``[master.self]`` (no slot manager) the TBox only reports its
manifest; the engine refuses a campaign naming it before anything is touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from redstone_agent.journal import atomic_write
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import (
    EcuJob,
    EcuStanding,
    ProgressFn,
    StepResult,
    TBoxBoot,
)
from redstone_agent.master.topology import EcuSpec
from redstone_agent.slots import NodeState, NodeStatus, SlotManager, SourceDigest
from redstone_agent.slots.scheme import other_slot
from redstone_agent.uptane.keys import Signer
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest

log = logging.getLogger(__name__)
INSTALLED_FILE = "tbox-installed.json"
"""What the TBox runs committed (target, length, sha256, release counter): its manifest."""


class SelfPort:
    """EcuPort (and SelfUpdatePort) of the TBox running this Master."""

    def __init__(
        self, spec: EcuSpec, signer: Signer, state_dir: Path, slots: SlotManager | None = None
    ) -> None:
        self.serial = spec.serial
        self._spec = spec
        self._signer = signer
        self._installed = state_dir / INSTALLED_FILE
        self._slots = slots

    # -- the manifest ---------------------------------------------------------------------

    def _current(self) -> dict[str, Any]:
        try:
            data = json.loads(self._installed.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    async def manifest(self, nonce: str) -> dict[str, Any]:
        current = self._current()
        report: dict[str, Any] = {"hardware_id": self._spec.hardware_id, "role": "primary"}
        if self._slots is not None:
            try:
                report["booted_slot"] = self._slots.booted
            except Exception as exc:  # the manifest still goes out, without the slot
                log.warning("%s: booted slot unknown: %s", self.serial, exc)
        manifest = EcuManifest(
            ecu_serial=self.serial,
            filename=str(current.get("target", self._spec.installed_target)),
            length=int(current.get("length", 0)),
            sha256=str(current.get("sha256", "")),
            release_counter=int(current.get("release_counter", 0)),
            nonce=nonce,
            report=report,
        )
        return sign_ecu_manifest(manifest, self._signer)

    # -- where the TBox stands --------------------------------------------------------------

    async def boot(self, job: EcuJob) -> TBoxBoot:
        if self._slots is None:
            return TBoxBoot(EcuStanding.OLD, "the TBox has no [master.self] slots")
        return await asyncio.to_thread(self._boot, self._slots, job)

    def _boot(self, slots: SlotManager, job: EcuJob) -> TBoxBoot:
        status = slots.status()  # settles an interrupted install or a fallback first
        holds = _slots_holding(slots, job.new.sha256)
        if status.booted in holds:
            if status.state is NodeState.TRYING:
                return TBoxBoot(EcuStanding.TRIAL)
            if status.state is NodeState.REVERTING:
                return TBoxBoot(EcuStanding.FAILED, "the new slot was rejected")
            return TBoxBoot(EcuStanding.NEW)
        if status.state is NodeState.INSTALLED and other_slot(status.booted) in holds:
            return TBoxBoot(EcuStanding.INSTALLED)
        if status.state is NodeState.INSTALLING:
            return TBoxBoot(EcuStanding.INSTALLING)
        return TBoxBoot(EcuStanding.OLD, _fallback_reason(status, job))

    async def standing(self, job: EcuJob) -> EcuStanding:
        return (await self.boot(job)).standing

    # -- the campaign's steps ---------------------------------------------------------------

    def _require_slots(self) -> SlotManager:
        if self._slots is None:
            raise EcuFailed(self.serial, "the TBox has no [master.self]: it cannot update itself")
        return self._slots

    async def install(self, job: EcuJob, progress: ProgressFn) -> StepResult:
        slots = self._require_slots()
        now = await self.boot(job)
        if now.standing in (EcuStanding.INSTALLED, EcuStanding.TRIAL, EcuStanding.NEW):
            return StepResult(detail=f"already holds {job.new.target}")
        loop = asyncio.get_running_loop()
        length = job.new.length

        def report(done: int, total: int | None) -> None:  # worker thread
            loop.call_soon_threadsafe(progress, done, total or length)

        delta = job.delta
        source = delta.path if delta is not None else job.new.path
        try:
            status = await asyncio.to_thread(
                slots.install,
                str(source),
                sha256=job.new.sha256,
                size=job.new.length,
                progress=report,
                source_digest=None
                if delta is None
                else SourceDigest(sha256=delta.sha256, length=delta.length),
            )
        except Exception as exc:
            raise EcuFailed(self.serial, str(exc)) from exc
        target = status.install["slot"] if status.install else other_slot(status.booted)
        how = f" from a {delta.length}-byte delta" if delta is not None else ""
        return StepResult(
            detail=f"{job.new.target} written{how} and verified in slot {target}",
            bytes_sent=delta.length if delta is not None else length,
            used_delta=delta is not None,
        )

    async def activate(self, job: EcuJob) -> StepResult:
        """Check the new slot is primed for its trial boot; the engine reboots."""
        now = await self.boot(job)
        if now.standing is EcuStanding.INSTALLED:
            return StepResult(detail="new slot primed for its trial boot: reboot pending")
        if now.standing in (EcuStanding.TRIAL, EcuStanding.NEW):
            return StepResult(detail="already runs its new slot")
        raise EcuFailed(
            self.serial, f"its new slot is not primed ({now.standing.value}): {now.reason}"
        )

    async def commit(self, job: EcuJob) -> StepResult:
        slots = self._require_slots()
        now = await self.boot(job)
        if now.standing is EcuStanding.TRIAL:
            await asyncio.to_thread(slots.mark_good)
        elif now.standing is not EcuStanding.NEW:
            raise EcuFailed(
                self.serial,
                f"cannot commit: it does not run {job.new.target} on trial "
                f"({now.standing.value}{': ' + now.reason if now.reason else ''})",
            )
        record = {
            "target": job.new.target,
            "length": job.new.length,
            "sha256": job.new.sha256,
            "release_counter": job.new.release_counter,
        }
        await asyncio.to_thread(atomic_write, self._installed, json.dumps(record).encode())
        return StepResult(detail=f"slot {slots.booted} committed")

    async def rollback(self, job: EcuJob) -> StepResult:
        if self._slots is None:
            return StepResult(detail="untouched")
        slots = self._slots
        now = await self.boot(job)
        if now.standing is EcuStanding.INSTALLED:
            await asyncio.to_thread(slots.discard, "the campaign rolls back")
            return StepResult(detail="the primed new slot was discarded")
        if now.standing in (EcuStanding.TRIAL, EcuStanding.FAILED, EcuStanding.NEW):
            raise EcuFailed(
                self.serial, f"runs its new slot ({now.standing.value}): only a reboot returns it"
            )
        status = await asyncio.to_thread(slots.acknowledge)
        return StepResult(detail=f"runs its old slot {status.booted}")

    async def reject(self, job: EcuJob, reason: str) -> None:
        slots = self._require_slots()
        await asyncio.to_thread(slots.mark_bad, reason)


def _slots_holding(slots: SlotManager, sha256: str) -> set[str]:
    """The slots whose verified image (the slot layer's images.json) is ``sha256``."""
    images = slots.images.load() or {}
    return {
        slot
        for slot, image in images.items()
        if isinstance(image, dict) and image.get("sha256") == sha256
    }


def _fallback_reason(status: NodeStatus, job: EcuJob) -> str:
    """The slot layer's account of a trial of ``job.new`` that ended on the old slot."""
    rollback = status.rollback
    if rollback and rollback.get("sha256") in (None, job.new.sha256):
        return str(rollback.get("reason", ""))
    return ""
