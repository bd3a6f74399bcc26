"""Errors of the boot-script store; each message is one line naming the cause."""

from redstone_agent.slots.errors import SlotError


class BootScriptError(SlotError):
    """Base of the boot-script store's errors."""


class BadBootScript(BootScriptError):
    """The bytes are not a compiled U-Boot script the first stage would run."""


class NoRedundancy(BootScriptError):
    """The layout cannot survive a power cut during an update: refused before any write."""


class BootScriptRefused(BootScriptError):
    """The store's state does not allow the step now (e.g. an activation awaits commit)."""


class CopyIOError(BootScriptError):
    """A copy cannot be opened, sized, read or written."""
