"""Errors of the trust layer: one hierarchy so callers can tell *why* trust failed."""

from __future__ import annotations

from redstone_agent.errors import RedstoneError

MAX_MESSAGE_CHARS = 600
"""Hostile metadata can put megabytes into a field a message quotes; keep the line short."""


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as one printable, UTF-8-encodable line of at most ``limit`` characters.

    Messages quote attacker-chosen metadata: a lone UTF-16 surrogate would make
    every later ``encode()`` (a log handler, a SOME/IP detail string) raise,
    and a newline would split a log record. Both are escaped here, once.
    """
    flat = " ".join(text.split())
    safe = flat.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


class UptaneError(RedstoneError):
    """Base class of every Uptane failure; its message is always :func:`one_line`."""

    def __init__(self, message: str = "") -> None:
        super().__init__(one_line(str(message)))


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


class OfflineBundleError(UptaneError):
    """An offline (USB/local) update bundle is unreadable, malformed, hostile, for
    another vehicle, or lacks a file its verified metadata names (docs/bundle.md)."""


class ManifestError(UptaneError):
    """A version manifest is malformed, badly signed, stale or replayed."""


class DownloadError(UptaneError):
    """Metadata or a target could not be downloaded (network, HTTP status, size cap, timeout)."""


class DownloadInterrupted(DownloadError):
    """The network failed on every retry (connection, timeout, slow server, 5xx): trying
    again later may succeed, unlike a wrong hash, an oversized answer or a 404."""


class RepositoryToolError(UptaneError):
    """A repository-editing operation cannot be done as asked."""
