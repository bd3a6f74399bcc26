"""The Master's port to the TBox's own boot script (``kind = "bootloader"``, issue 12).

The image is a compiled U-Boot script (``boot.scr``) and the ECU is a pair of
copies plus one env variable (:class:`~redstone_agent.slots.bootscript.BootScriptStore`,
docs/boot.md "Boot script and bootloader update"). Every step first reads where
the copies and the env stand and does only what is missing, so the engine can
re-run any phase after the Master was killed:

=================================================  ===========
store                                              standing
=================================================  ===========
nothing pending, the booting copy holds the image  NEW
nothing pending, otherwise                         OLD
pending image written, not selected                INSTALLED
pending image selected (and valid)                 TRIAL
pending image selected but invalid (fallback)      FAILED
pending image's write interrupted                  OLD
another image selected and uncommitted             FAILED
neither copy valid                                 FAILED
=================================================  ===========

``activate`` only switches the env: the script runs at the TBox's next boot,
which the ``self`` ECU's activation brings (the TBox is always updated last).
``rollback`` selects the previous copy again; after a commit the previous copy
is free and a rollback means installing the old image as a new one.

**Journal** (``<state_dir>/bootloader-<serial>.json``): the copies hold bytes,
not Uptane target names, so the port remembers the target, length and release
counter of each image it installed (by SHA-256) for the version manifest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from redstone_agent.errors import RedstoneError
from redstone_agent.journal import Journal, JournalCorrupt
from redstone_agent.master.errors import EcuFailed
from redstone_agent.master.ports import EcuJob, EcuStanding, ProgressFn, StepResult
from redstone_agent.master.topology import EcuSpec
from redstone_agent.slots.bootscript import BootScriptState, BootScriptStatus, BootScriptStore
from redstone_agent.uptane.keys import Signer
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest

log = logging.getLogger(__name__)
T = TypeVar("T")
KEEP_IMAGES = 4
"""Known images kept in the journal (two copies, plus slack for a retried campaign)."""


def standing_of(status: BootScriptStatus, sha256: str) -> EcuStanding:
    """Where the boot script stands with respect to the image ``sha256`` (module table)."""
    if not status.booting:
        return EcuStanding.FAILED
    pending = status.pending
    if pending is not None and pending.sha256 == sha256:
        if status.state is BootScriptState.ACTIVATED:
            return EcuStanding.TRIAL if status.booting == pending.target else EcuStanding.FAILED
        if status.state is BootScriptState.INSTALLED:
            return EcuStanding.INSTALLED
        return EcuStanding.OLD
    if pending is not None and status.state is BootScriptState.ACTIVATED:
        return EcuStanding.FAILED
    return EcuStanding.NEW if status.holds(status.booting, sha256) else EcuStanding.OLD


class BootloaderPort:
    """The TBox's boot script as the campaign engine sees it (an :class:`EcuPort`)."""

    def __init__(self, spec: EcuSpec, store: BootScriptStore, signer: Signer) -> None:
        self.serial = spec.serial
        self._spec = spec
        self._store = store
        self._signer = signer
        self._journal = Journal(store.config.state_dir / f"bootloader-{spec.serial}.json")
        self._lock = asyncio.Lock()

    async def manifest(self, nonce: str) -> dict[str, Any]:
        """The image the first stage runs now: its target name when this port installed it."""
        status = await self._call("status", self._store.status)
        view = status.copies.get(status.booting)
        sha256 = view.sha256 if view is not None else ""
        known = self._images().get(sha256, {})
        manifest = EcuManifest(
            ecu_serial=self.serial,
            filename=str(known.get("target", self._spec.installed_target)),
            length=view.length if view is not None else 0,
            sha256=sha256,
            release_counter=int(known.get("release_counter", 0)),
            nonce=nonce,
            report={
                "hardware_id": self._spec.hardware_id,
                "role": "bootloader",
                "copy": status.booting,
                "selected": status.selected,
                "state": status.state.value,
            },
        )
        return sign_ecu_manifest(manifest, self._signer)

    async def standing(self, job: EcuJob) -> EcuStanding:
        status = await self._call("status", self._store.status)
        return standing_of(status, job.new.sha256)

    async def install(self, job: EcuJob, progress: ProgressFn) -> StepResult:
        """Write ``job.new`` into the copy that does not boot, read it back; no switch."""
        new = job.new
        if job.delta is not None:
            # The director offers deltas only to primary/sub ECUs (docs/api.md); a copy is
            # written whole, so a delta here would be written as if it were the script.
            raise EcuFailed(
                self.serial,
                f"assigned a delta ({job.delta.target}): boot-script copies take whole images only",
            )
        async with self._lock:
            self._remember(job)
            progress(0, new.length)
            detail = await self._call(
                "install", self._store.install, new.path, new.sha256, new.length
            )
            progress(new.length, new.length)
        wrote = detail.startswith("wrote")
        return StepResult(detail=detail, bytes_sent=new.length if wrote else 0)

    async def activate(self, job: EcuJob) -> StepResult:
        """Select the new copy (one env write); it runs at the TBox's next boot."""
        async with self._lock:
            detail = await self._call("activate", self._store.activate, job.new.sha256)
        return StepResult(detail=detail)

    async def commit(self, job: EcuJob) -> StepResult:
        async with self._lock:
            status = await self._call("status", self._store.status)
            standing = standing_of(status, job.new.sha256)
            if standing is EcuStanding.NEW:
                return StepResult(detail=f"copy {status.booting} runs it, committed")
            if standing is not EcuStanding.TRIAL:
                raise EcuFailed(self.serial, f"cannot commit: the boot script is {standing.value}")
            detail = await self._call("commit", self._store.commit)
        return StepResult(detail=detail)

    async def rollback(self, job: EcuJob) -> StepResult:
        """Select the previous copy again (never written by this update)."""
        async with self._lock:
            status = await self._call("status", self._store.status)
            if status.pending is None and status.holds(status.booting, job.new.sha256):
                raise EcuFailed(
                    self.serial,
                    f"cannot roll back: {job.new.target} is committed in copy "
                    f"{status.booting}; install the previous boot script as an update",
                )
            detail = await self._call("rollback", self._store.rollback)
        return StepResult(detail=detail)

    # -- helpers ---------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """A blocking store call in a worker thread; any failure is one EcuFailed line."""
        try:
            return await asyncio.to_thread(fn, *args)
        except (RedstoneError, OSError) as exc:
            raise EcuFailed(self.serial, f"boot script {what}: {exc}") from None

    def _images(self) -> dict[str, dict[str, Any]]:
        try:
            saved = self._journal.load() or {}
        except JournalCorrupt as exc:
            log.error("%s: %s; manifests name the configured target", self.serial, exc)
            return {}
        images = saved.get("images", {})
        return images if isinstance(images, dict) else {}

    def _remember(self, job: EcuJob) -> None:
        """Journal the target behind ``job.new``'s hash before any byte is written."""
        images = self._images()
        new = job.new
        entry = {"target": new.target, "length": new.length, "release_counter": new.release_counter}
        if images.get(new.sha256) == entry:
            return
        images.pop(new.sha256, None)
        images[new.sha256] = entry
        while len(images) > KEEP_IMAGES:
            images.pop(next(iter(images)))
        try:
            self._journal.save({"images": images})
        except OSError as exc:
            raise EcuFailed(self.serial, f"boot script install not started: {exc}") from None
