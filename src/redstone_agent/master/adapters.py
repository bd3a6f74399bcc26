"""The real ports: cloud client, Uptane Primary + cache (the TBox itself: ``ecu_self.py``).

These adapt the libraries (``cloud``, ``uptane.primary``, ``master.cache``)
to the engine's narrow ports. Blocking library calls run in worker threads
so the event loop keeps serving SOME/IP, the cache server and the watchdog.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from redstone_agent.cloud.client import DeviceClient
from redstone_agent.cloud.errors import CloudUnavailable
from redstone_agent.delta.reader import read_header
from redstone_agent.master.cache import Cache
from redstone_agent.master.cache_server import CacheServer
from redstone_agent.master.errors import DownloadPaused, EcuFailed
from redstone_agent.master.ports import (
    DeltaImage,
    EcuPort,
    Fetched,
    Image,
    OfferedCampaign,
    ProgressFn,
    VerifiedCampaign,
)
from redstone_agent.master.topology import EcuSpec
from redstone_agent.uptane.errors import DownloadInterrupted, ManifestError
from redstone_agent.uptane.keys import Signer
from redstone_agent.uptane.manifests import EcuManifest, sign_vehicle_manifest
from redstone_agent.uptane.primary import PrimarySource
from redstone_agent.uptane.verifier import EcuState, VerifiedTarget

log = logging.getLogger(__name__)
T = TypeVar("T")

EVENT_QUIET_S = 60.0
"""After the cloud proved unreachable, events are dropped unsent for this long: they
are reports (the signed manifest is the truth), and an offline vehicle — a campaign from
a USB bundle — would otherwise queue one retry loop per state change behind the other."""

ACTIVE_ASSIGNMENTS = frozenset({"offered", "accepted", "downloading", "installing"})
"""Assignment states in which the vehicle should (still) run the campaign."""


class CloudAdapter:
    """CloudPort over :class:`DeviceClient`: polls, manifests, events."""

    def __init__(
        self,
        client: DeviceClient,
        *,
        vin: str,
        primary_serial: str,
        ecus: Mapping[str, EcuPort],
        signer: Signer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._vin = vin
        self._primary = primary_serial
        self._ecus = ecus
        self._signer = signer
        self.poll_interval_s: float | None = None
        self._one_at_a_time = asyncio.Lock()
        """DeviceClient takes one caller at a time; events and manifests overlap."""
        self._clock = clock
        self._quiet_until = -math.inf
        """Events are dropped before this clock reading (:data:`EVENT_QUIET_S`)."""

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._one_at_a_time:
            return await self._unlocked_call(fn, *args, **kwargs)

    async def _unlocked_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` in a worker thread; the caller holds ``_one_at_a_time``."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except CloudUnavailable as exc:
            if exc.status is None:  # not reached at all (an answering 5xx is not offline)
                self._went_quiet(exc)
            raise

    def _went_quiet(self, exc: CloudUnavailable) -> None:
        if self._clock() >= self._quiet_until:
            log.info(
                "cloud unreachable (%s): events are not sent for the next %g s",
                exc,
                EVENT_QUIET_S,
            )
        self._quiet_until = self._clock() + EVENT_QUIET_S

    async def poll(self) -> OfferedCampaign | None:
        result = await self._call(self._client.poll)
        self.poll_interval_s = result.poll_interval_s
        offer = result.update
        if offer is None or offer.state not in ACTIVE_ASSIGNMENTS:
            return None
        return OfferedCampaign(
            offer.campaign,
            offer.consent_required,
            {serial: image.target for serial, image in offer.ecus.items()},
            offer.release_notes_url,
        )

    async def report_manifest(self) -> Mapping[str, str]:
        nonce = await self._call(self._client.nonce)
        manifests = await self._manifests(nonce)
        data = sign_vehicle_manifest(self._vin, self._primary, nonce, manifests, self._signer)
        ack = await self._call(self._client.post_manifest, data)
        log.info(
            "vehicle manifest accepted (%d ECUs%s)",
            len(manifests),
            f"; changed: {', '.join(ack.changed_ecus)}" if ack.changed_ecus else "",
        )
        return {serial: _running(envelope) for serial, envelope in manifests.items()}

    async def collect_running(self) -> Mapping[str, str]:
        manifests = await self._manifests(secrets.token_hex(16))
        return {serial: _running(envelope) for serial, envelope in manifests.items()}

    async def _manifests(self, nonce: str) -> dict[str, dict[str, Any]]:
        """Every ECU's signed manifest for ``nonce``; an ECU that cannot answer is left out."""
        serials = list(self._ecus)
        answers = await asyncio.gather(
            *(self._ecus[s].manifest(nonce) for s in serials), return_exceptions=True
        )
        manifests: dict[str, dict[str, Any]] = {}
        for serial, answer in zip(serials, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("no manifest from %s: %s", serial, answer)
            else:
                manifests[serial] = answer
        return manifests

    async def event(
        self, kind: str, campaign: str | None, ecu_serial: str = "", **detail: Any
    ) -> None:
        async with self._one_at_a_time:  # checked once it is this event's turn
            if self._clock() < self._quiet_until:
                log.debug("event %s of %s not sent: the cloud was unreachable", kind, campaign)
                return
            await self._unlocked_call(
                self._client.event, kind, campaign, ecu_serial=ecu_serial, detail=detail
            )

    async def upload_log(self, campaign: str | None, source: str, text: str) -> None:
        log_id = await self._call(self._client.upload_log, campaign, source, text)
        log.info("campaign log uploaded (%d bytes, log %d)", len(text.encode()), log_id)


def _running(envelope: Mapping[str, Any]) -> str:
    """The target an ECU manifest reports ("" when it does not parse)."""
    try:
        return EcuManifest.from_signed(envelope["signed"]).filename
    except (KeyError, TypeError, ManifestError):
        return ""


class TrustAdapter:
    """TrustPort over the Uptane Primary, the cache and the cache server.

    The Primary is the online ``PrimaryVerifier`` or, for a USB bundle, an
    ``uptane.offline.OfflinePrimary`` (``master.bundle.open_bundle``): everything
    else, Subs and UDS ports included, is the same for both.
    """

    def __init__(
        self,
        primary: PrimarySource,
        cache: Cache,
        server: CacheServer,
        ecus: Sequence[EcuSpec],
    ) -> None:
        self._primary = primary
        self._cache = cache
        self._server = server
        self._specs = {e.serial: e for e in ecus}
        self._known = {e.serial: EcuState(hardware_id=e.hardware_id) for e in ecus}
        self._verified: dict[str, VerifiedTarget] = {}
        self._early: dict[str, int] = {}
        """Bytes downloaded during verification (deltas), counted in the next fetch."""

    async def verify(self, offer: OfferedCampaign, running: Mapping[str, str]) -> VerifiedCampaign:
        result = await asyncio.to_thread(self._primary.refresh, self._known)
        self._verified = dict(result.targets)
        bundle = result.bundle.to_bytes()
        digest = await asyncio.to_thread(self._cache.put_blob, bundle)
        targets: dict[str, Image] = {}
        deltas: dict[str, DeltaImage] = {}
        for serial, target in result.targets.items():
            file = self._image(target)
            if target.delta_source_sha256 is None:
                targets[serial] = file
            else:
                deltas[serial] = DeltaImage(
                    file.target,
                    file.sha256,
                    file.length,
                    target.delta_source_sha256,
                    file.path,
                    file.url,
                )
                if not self._cache.has(file.sha256, file.length):
                    self._early[serial] = file.length
                targets[serial] = await self._delta_result(target, file)
        previous: dict[str, Image] = {}
        for serial in targets:
            spec = self._specs.get(serial)
            old = running.get(serial, "") or (spec.installed_target if spec else "")
            if spec is None or not spec.kind.is_uds or not old:
                continue
            found = await asyncio.to_thread(
                self._primary.image_target, old, serial, spec.hardware_id
            )
            self._verified[f"previous:{serial}"] = found
            previous[serial] = self._image(found)
        return VerifiedCampaign(
            targets=targets,
            previous=previous,
            deltas=deltas,
            bundle=bundle,
            bundle_url=self._server.metadata_url(digest),
        )

    async def _delta_result(self, target: VerifiedTarget, file: Image) -> Image:
        """The image a director-assigned delta produces, from the (verified) delta's header.

        The delta is downloaded here, ahead of the other images: its header says
        which image the Sub's slot will hold (docs/someip.md, Install with a delta),
        and the plan journaled after verification must already name it.
        """
        fetch = functools.partial(self._primary.download, target)
        path = await asyncio.to_thread(self._cache.download, fetch, file.sha256, file.length)
        with path.open("rb") as stream:
            header = read_header(stream)
        return replace(file, sha256=header.target_sha256.hex(), length=header.target_size)

    def _image(self, target: VerifiedTarget) -> Image:
        version = str(target.custom.get("version", "")) or target.filename
        return Image(
            target.filename,
            target.sha256,
            target.length,
            version,
            self._cache.path(target.sha256),
            self._server.target_url(target.sha256),
            target.release_counter,
        )

    async def fetch(
        self, campaign: VerifiedCampaign, progress: ProgressFn
    ) -> Mapping[str, Fetched]:
        wanted: list[tuple[str, Image | DeltaImage, str]] = [
            (s, campaign.deltas.get(s) or i, s) for s, i in campaign.targets.items()
        ]
        wanted += [(s, i, f"previous:{s}") for s, i in campaign.previous.items()]
        needed = {image.sha256: image.length for _, image, _ in wanted}
        keep = [campaign.bundle_url.rsplit("/", 1)[-1]]
        await asyncio.to_thread(self._cache.reserve, needed, keep)
        total, done_before = sum(needed.values()), 0
        downloaded = {s: self._early.pop(s, 0) for s in campaign.targets}
        loop = asyncio.get_running_loop()
        for serial, image, key in wanted:
            if not self._cache.has(image.sha256, image.length):
                target = await self._fetchable(key, serial, image)
                base = done_before

                def report(done: int, _total: int, base: int = base) -> None:  # worker thread
                    loop.call_soon_threadsafe(progress, base + done, total)

                fetch = functools.partial(self._primary.download, target)
                try:
                    await asyncio.to_thread(
                        self._cache.download, fetch, image.sha256, image.length, progress=report
                    )
                except DownloadInterrupted as exc:
                    raise DownloadPaused(f"{serial}: {exc}") from exc
                downloaded[serial] += image.length
            done_before += image.length
        return {
            serial: Fetched(count, _saving(campaign.targets[serial], campaign.deltas.get(serial)))
            for serial, count in downloaded.items()
        }

    async def _fetchable(self, key: str, serial: str, image: Image | DeltaImage) -> VerifiedTarget:
        """The verified target to download ``image`` by (verified again after a restart)."""
        target = self._verified.get(key)
        if target is None and key == serial:
            result = await asyncio.to_thread(self._primary.refresh, self._known)
            self._verified.update(result.targets)
            target = self._verified.get(key)
        elif target is None:
            spec = self._specs[serial]
            target = await asyncio.to_thread(
                self._primary.image_target, image.target, serial, spec.hardware_id
            )
        if target is None or (target.sha256, target.length) != (image.sha256, image.length):
            raise EcuFailed(serial, f"{image.target} changed since it was verified")
        return target


def _saving(image: Image, delta: DeltaImage | None) -> int:
    """Bytes a delta saved on the cloud link (and the vehicle network)."""
    return max(image.length - delta.length, 0) if delta is not None else 0
