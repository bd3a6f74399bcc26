"""Errors of the slot layer; each message is one line an operator can act on."""

from redstone_agent.errors import RedstoneError


class SlotError(RedstoneError):
    """Base of the slot layer's errors."""


class UnsafeTarget(SlotError):
    """Writing the requested device could make the running system unbootable."""


class BootedSlotUnknown(SlotError):
    """The kernel command line does not say which slot is running."""


class BootloaderError(SlotError):
    """The bootloader environment tool failed or is missing."""


class BootEnvCorrupt(BootloaderError):
    """The bootloader environment cannot be read (bad CRC, invalid block, missing)."""


class InstallRefused(SlotError):
    """The node's state does not allow the requested operation right now."""


class InstallFailed(SlotError):
    """An install was attempted and did not complete; the active slot stays primary."""


class SourceMismatch(SlotError):
    """The source is not the file the caller verified, or a delta builds another image.

    Distinct from a result-hash mismatch: the caller named the source's own
    length and SHA-256 (an Uptane-signed delta file), so this means someone
    served other bytes than the signed ones.
    """
