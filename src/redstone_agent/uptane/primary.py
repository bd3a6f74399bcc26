"""Primary full verification over the network (the Master's entry point).

``tuf.ngclient.Updater`` fetches and caches both repositories (root chain,
rollback checks against the cache, size caps from snapshot/timestamp lengths).
Then the I/O-free :func:`verify_full` re-verifies *the cached bytes* with the
configured clock and cross-checks every ECU, and those same bytes become the
:class:`MetadataBundle` forwarded to Subs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import requests
from tuf.api import exceptions as tuf_errors
from tuf.ngclient.fetcher import FetcherInterface

from redstone_agent.retry import RetryPolicy
from redstone_agent.uptane.bundle import DIRECTOR, IMAGE, MetadataBundle, RepositoryMetadata
from redstone_agent.uptane.errors import DownloadError, MetadataError, UptaneError
from redstone_agent.uptane.fetcher import FetchLimits, Progress, RequestsFetcher, download_target
from redstone_agent.uptane.storage import role_files, root_chain
from redstone_agent.uptane.targetinfo import ImageFields, published_name, sha256_of
from redstone_agent.uptane.trusted import as_metadata_error
from redstone_agent.uptane.tufapi import Metadata, Targets, Updater, UpdaterConfig
from redstone_agent.uptane.verifier import (
    Clock,
    EcuState,
    TrustedRoots,
    VerificationResult,
    VerifiedTarget,
    system_clock,
    verify_full,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetadataCaps:
    """Largest metadata file accepted per role (bytes): the endless-data defence."""

    root: int = 512 * 1024
    timestamp: int = 16 * 1024
    snapshot: int = 2 * 1024 * 1024
    targets: int = 5 * 1024 * 1024


@dataclass(frozen=True)
class PrimaryConfig:
    """Where the repositories are and how patiently to talk to them."""

    director_url: str
    """Metadata base URL of this vehicle's director, e.g. https://.../uptane/director/VIN/"""
    image_url: str
    """Metadata base URL of the image repository."""
    image_targets_url: str
    """Base URL targets are downloaded from (consistent-snapshot names)."""
    cache_dir: Path
    """Writable; holds ``director/`` and ``image/`` metadata caches."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: FetchLimits = field(default_factory=FetchLimits)
    caps: MetadataCaps = field(default_factory=MetadataCaps)


@dataclass(frozen=True)
class PrimaryResult:
    """Verified assignments and the exact metadata bytes to forward to Subs."""

    verification: VerificationResult
    bundle: MetadataBundle

    @property
    def targets(self) -> Mapping[str, VerifiedTarget]:
        return self.verification.targets


class PrimarySource(Protocol):
    """Where the Master's trust comes from: :class:`PrimaryVerifier` over the network,
    or :class:`redstone_agent.uptane.offline.OfflinePrimary` over a USB bundle. Both
    verify the same way; only the bytes travel differently."""

    def refresh(
        self, ecus: Mapping[str, EcuState] | None = None, previous: MetadataBundle | None = None
    ) -> PrimaryResult: ...

    def image_target(self, path: str, serial: str, hardware_id: str) -> VerifiedTarget: ...

    def download(
        self, target: VerifiedTarget, dest: Path, progress: Progress | None = None
    ) -> Path: ...


class PrimaryVerifier:
    """Refreshes director and image repository and verifies a vehicle's assignments."""

    def __init__(
        self,
        config: PrimaryConfig,
        roots: TrustedRoots,
        *,
        session: requests.Session | None = None,
        clock: Clock = system_clock,
        metadata_fetcher: FetcherInterface | None = None,
    ) -> None:
        """``metadata_fetcher`` serves the metadata from elsewhere than HTTP (an offline
        bundle: ``uptane.offline``); the checks stay exactly the same."""
        if roots.image is None:
            raise MetadataError(IMAGE, "the Primary needs a trusted image-repository root")
        self.config = config
        self.roots = roots
        self.clock = clock
        self.fetcher = RequestsFetcher(session, config.retry, config.limits)
        self._metadata_fetcher: FetcherInterface = metadata_fetcher or self.fetcher

    def _updater(self, name: str, url: str, root: bytes) -> Updater:
        caps = self.config.caps
        directory = self.config.cache_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        config = UpdaterConfig(
            root_max_length=caps.root,
            timestamp_max_length=caps.timestamp,
            snapshot_max_length=caps.snapshot,
            targets_max_length=caps.targets,
        )
        return Updater(
            str(directory), url, fetcher=self._metadata_fetcher, config=config, bootstrap=root
        )

    def refresh(
        self, ecus: Mapping[str, EcuState] | None = None, previous: MetadataBundle | None = None
    ) -> PrimaryResult:
        """Fetch, verify and cross-check; ``ecus`` carries each ECU's known state."""
        assert self.roots.image is not None
        director = self._updater(DIRECTOR, self.config.director_url, self.roots.director)
        image = self._updater(IMAGE, self.config.image_url, self.roots.image)
        with _translated(DIRECTOR):
            director.refresh()
        cached_director = _cached(self.config.cache_dir / DIRECTOR)
        paths = _target_paths(cached_director)
        with _translated(IMAGE):
            image.refresh()
            for path in paths:
                image.get_targetinfo(path)  # pulls the delegated roles the walk needs
        bundle = MetadataBundle(
            {DIRECTOR: cached_director, IMAGE: _cached(self.config.cache_dir / IMAGE)}
        )
        result = verify_full(bundle, self.roots, ecus=ecus, clock=self.clock, previous=previous)
        log.info(
            "verified director targets v%d: %d ECU assignment(s)",
            result.director_targets_version,
            len(result.targets),
        )
        return PrimaryResult(result, _trim(bundle, result))

    def image_target(self, path: str, serial: str, hardware_id: str) -> VerifiedTarget:
        """An image-repository target the director does not assign (the image a UDS
        ECU must get back on rollback), verified through the image repository alone."""
        assert self.roots.image is not None
        image = self._updater(IMAGE, self.config.image_url, self.roots.image)
        with _translated(IMAGE):
            found = image.get_targetinfo(path)
        if found is None:
            raise MetadataError(IMAGE, f"no target {path!r} in the image repository")
        try:
            fields = ImageFields.from_target(found)
            sha256 = sha256_of(found, "image repository")
        except UptaneError as exc:
            raise MetadataError(IMAGE, str(exc)) from exc
        if hardware_id not in fields.hardware_ids:
            raise MetadataError(IMAGE, f"{path} is not built for hardware id {hardware_id!r}")
        return VerifiedTarget(
            serial,
            path,
            found.length,
            sha256,
            hardware_id,
            fields.release_counter,
            None,
            dict(fields.extra),
        )

    def download(
        self, target: VerifiedTarget, dest: Path, progress: Progress | None = None
    ) -> Path:
        """Download (resuming) a verified target by its consistent-snapshot name."""
        base = self.config.image_targets_url.rstrip("/")
        url = f"{base}/{quote(published_name(target.filename, target.sha256))}"
        return download_target(
            self.fetcher, url, dest, target.length, target.sha256, progress=progress
        )


@contextmanager
def _translated(repository: str) -> Iterator[None]:
    """Turn python-tuf exceptions into our one-line errors, naming the repository."""
    try:
        with as_metadata_error(repository):
            yield
    except tuf_errors.DownloadError as exc:
        reason = str(exc) or type(exc).__name__
        raise DownloadError(f"{repository} repository: {reason}") from exc


def _target_paths(director: RepositoryMetadata) -> list[str]:
    """Target paths in the director's (just verified and cached) targets metadata."""
    md = Metadata[Targets].from_bytes(director.roles["targets"])
    return list(md.signed.targets)


def _cached(directory: Path) -> RepositoryMetadata:
    """The metadata the Updater just verified and cached, as a bundle entry."""
    roles = role_files(directory)
    roles.pop("root", None)  # a symlink to the newest root_history entry
    return RepositoryMetadata(root_chain(directory / "root_history"), roles)


def _trim(bundle: MetadataBundle, result: VerificationResult) -> MetadataBundle:
    """Forward only the image roles the verification used (stale cache files stay home)."""
    image = bundle.repository(IMAGE)
    roles = {r: d for r, d in image.roles.items() if r in result.image_roles_used}
    return MetadataBundle(
        {DIRECTOR: bundle.repository(DIRECTOR), IMAGE: RepositoryMetadata(image.roots, roles)}
    )
