"""Errors of the Master OTA, all one-line and user-facing."""

from __future__ import annotations

from redstone_agent.errors import RedstoneError


class MasterError(RedstoneError):
    """Base class of every Master failure."""


class CacheError(MasterError):
    """The target cache cannot hold, find or trust a file (bad hash, I/O failure)."""


class CacheFull(CacheError):
    """A campaign's targets do not fit in the cache budget, even after evicting the rest."""


class EcuFailed(MasterError):
    """An ECU refused or failed a campaign step; the message names the ECU and why."""

    def __init__(self, serial: str, message: str) -> None:
        super().__init__(f"{serial}: {message}")
        self.serial = serial


class CampaignRefused(MasterError):
    """A campaign that must not start (unknown ECU, unsupported kind); nothing was touched."""


class EcuUnreachable(EcuFailed):
    """An ECU did not answer within its deadline (offline, rebooting for too long).

    Unlike its base, nothing was refused: the same step may succeed when tried again.
    """


class DownloadPaused(MasterError):
    """The cloud could not be reached for a while; the download continues at the next poll."""
