"""Errors of the byte-source layer, all one-line and user-facing."""

from __future__ import annotations

from redstone_agent.errors import RedstoneError


class TransferError(RedstoneError):
    """A source could not be read to its end (unreachable, refused, gave up retrying)."""


class SourceTooLarge(TransferError):
    """The source announced or delivered more bytes than the caller allows (endless-data attack)."""


class SourceChanged(TransferError):
    """The file on the server changed between requests, so a resume would splice two files."""


class ResumeRefused(TransferError):
    """A source opened at an offset cannot continue there (a pipe, a changed or shorter file).

    Raised only when opening, before any byte is delivered: the caller opens
    the source again from byte 0.
    """


class CorruptSource(TransferError):
    """Compressed data that cannot be decoded (corrupt or truncated stream)."""


class TransferCancelled(TransferError):
    """The caller's cancel event was set; work stopped at a chunk boundary."""
