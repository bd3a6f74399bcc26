"""An offline (USB/local) bundle as the engine's ports: an offer and a TrustPort.

The bundle's campaign runs through the same :class:`TrustAdapter` as an online
one; only its :class:`~redstone_agent.uptane.primary.PrimarySource` differs
(:class:`~redstone_agent.uptane.offline.OfflinePrimary` reads the file instead
of the network). So the verification, the metadata blob forwarded to Subs,
deltas, the UDS rollback images, the cache budget and the cache server's URLs
are the online ones, and Sub and UDS ports see no difference (docs/bundle.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from redstone_agent.master.adapters import TrustAdapter
from redstone_agent.master.cache import Cache
from redstone_agent.master.cache_server import CacheServer
from redstone_agent.master.ports import OfferedCampaign
from redstone_agent.master.topology import EcuSpec
from redstone_agent.uptane.offline import OfflinePrimary
from redstone_agent.uptane.verifier import Clock, EcuState, TrustedRoots, system_clock


async def open_bundle(
    path: Path,
    *,
    vin: str,
    ecus: Sequence[EcuSpec],
    roots: TrustedRoots,
    metadata_dir: Path,
    cache: Cache,
    server: CacheServer,
    clock: Clock = system_clock,
) -> tuple[OfferedCampaign, TrustAdapter]:
    """Open, check and verify the bundle at ``path``; its campaign and the TrustPort to run it.

    ``metadata_dir`` is the Primary's metadata cache, the one the online
    ``PrimaryVerifier`` uses (``<state-dir>/uptane``): a bundle older than what the
    vehicle has already accepted is refused as a rollback, and what the bundle
    brings is remembered. Raises a one-line ``UptaneError`` (``OfflineBundleError``,
    ``MetadataError``, ``CrossCheckError``, ``DownloadError``) when the bundle is
    unreadable, hostile, for another vehicle, tampered, expired or lacks a target;
    nothing was copied into the cache then.

    The TrustPort's ``verify`` verifies the bundle again (it must still be there),
    and its ``fetch`` copies the images out of it into ``cache``, hash-checked.
    """
    primary = await asyncio.to_thread(
        OfflinePrimary.open,
        Path(path),
        vin=vin,
        serials=[e.serial for e in ecus],
        roots=roots,
        metadata_dir=metadata_dir,
        clock=clock,
    )
    known = {e.serial: EcuState(hardware_id=e.hardware_id) for e in ecus}
    result = await asyncio.to_thread(primary.refresh, known)
    manifest = primary.bundle.manifest
    offer = OfferedCampaign(
        manifest.campaign,
        manifest.consent_required,
        {serial: target.filename for serial, target in sorted(result.targets.items())},
        manifest.release_notes_url,
    )
    return offer, TrustAdapter(primary, cache, server, ecus)
