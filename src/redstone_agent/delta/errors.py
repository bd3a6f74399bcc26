"""Errors of the delta package: each says which delta, which operation, and why."""

from __future__ import annotations

from redstone_agent.errors import RedstoneError


class DeltaError(RedstoneError):
    """Base class for everything that can go wrong making, reading or applying a delta."""


class DeltaFormatError(DeltaError):
    """The delta is not well formed: bad magic, unknown version, a field out of its bounds."""


class DeltaTruncatedError(DeltaFormatError):
    """The delta stream ended before the data its header and operations promise."""


class TargetTooLargeError(DeltaError):
    """The delta would write more than the caller can take (expected size, slot, free space)."""


class SourceMismatchError(DeltaError):
    """The delta was made for another source image than the one it is applied to."""


class DeltaVerificationError(DeltaError):
    """An operation's output or the whole result does not match the hash the delta states."""
