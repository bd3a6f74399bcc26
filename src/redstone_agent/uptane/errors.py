"""Errors of the trust layer: one hierarchy so callers can tell *why* trust failed."""

from __future__ import annotations

from redstone_agent.errors import RedstoneError


class UptaneError(RedstoneError):
    """Base class of every Uptane failure."""


class KeyFileError(UptaneError):
    """A key file is missing, unreadable, too widely readable or not a supported key."""


class MetadataError(UptaneError):
    """Repository metadata failed to load or verify (signature, version, expiry, hashes)."""

    def __init__(self, repository: str, message: str) -> None:
        super().__init__(f"{repository} repository: {message}")
        self.repository = repository


class CrossCheckError(UptaneError):
    """The director and the image repository disagree about an ECU's target."""

    def __init__(self, ecu_serial: str, message: str) -> None:
        super().__init__(f"ECU {ecu_serial}: {message}")
        self.ecu_serial = ecu_serial


class BundleError(UptaneError):
    """A forwarded metadata bundle is malformed or too large."""


class ManifestError(UptaneError):
    """A version manifest is malformed, badly signed, stale or replayed."""


class DownloadError(UptaneError):
    """Metadata or a target could not be downloaded (network, HTTP status, size cap, timeout)."""


class RepositoryToolError(UptaneError):
    """A repository-editing operation cannot be done as asked."""
