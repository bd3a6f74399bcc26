"""Where package bytes live: behind :class:`BlobStore` (filesystem or S3-compatible)."""

from redstone_cloud.storage.base import BlobInfo, BlobStore
from redstone_cloud.storage.filesystem import FilesystemStore

__all__ = ["BlobInfo", "BlobStore", "FilesystemStore"]
