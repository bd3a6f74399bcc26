"""The running backend's parts, built once from :class:`Settings` and shared by API and CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from redstone_cloud.db.engine import make_engine, make_sessionmaker
from redstone_cloud.errors import ConfigError
from redstone_cloud.onlinekeys import DirectorKeyFiles
from redstone_cloud.pollcache import BoundedCache
from redstone_cloud.quotas import Quotas
from redstone_cloud.services.device import PollView
from redstone_cloud.settings import Settings
from redstone_cloud.storage.base import BlobStore
from redstone_cloud.storage.filesystem import FilesystemStore
from redstone_cloud.uptane_link import OnlineRepository


@dataclass
class Backend:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: BlobStore
    director: OnlineRepository
    director_keys: DirectorKeyFiles
    image_signer: OnlineRepository | None
    """Development only (``image_online_key``); None: the image repository is uploaded."""
    poll_cache: BoundedCache[PollView] = field(default_factory=lambda: BoundedCache(200_000))
    """vehicle id -> last poll view; valid while the vehicle's poll_rev matches."""
    quotas: Quotas = field(default_factory=Quotas)
    """Per-vehicle event and log budgets (this process's share)."""

    def close(self) -> None:
        self.engine.dispose()


def make_store(settings: Settings) -> BlobStore:
    if settings.storage == "filesystem":
        return FilesystemStore(settings.blob_dir)
    if not settings.s3.bucket:
        raise ConfigError(
            "storage = 's3' needs [cloud.s3] bucket (and endpoint for non-AWS stores)"
        )
    from redstone_cloud.storage.s3 import S3Store

    return S3Store(settings.s3)


def open_backend(settings: Settings) -> Backend:
    engine = make_engine(settings.database_url)
    director_keys = DirectorKeyFiles.from_settings(settings)
    director_keys.keys()  # create missing keys now; a bad key file is an error at start
    return Backend(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        store=make_store(settings),
        director=OnlineRepository(director_keys.keys),
        director_keys=director_keys,
        image_signer=(
            OnlineRepository.from_key_file(settings.image_online_key)
            if settings.image_online_key
            else None
        ),
    )
