"""What the device API answers, as typed values (docs/api.md §3).

These are the *cloud's claims*, not verified facts: an :class:`Offer` tells the
Master that an update exists and which images to expect; the Uptane director
metadata (fetched by ``uptane.primary``) stays the authority on what to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class OfferedImage:
    """One ECU's full image as the poll answer names it."""

    target: str
    length: int
    sha256: str
    release_counter: int


@dataclass(frozen=True)
class Offer:
    """The vehicle's current assignment in a campaign."""

    campaign: str
    state: str
    """The assignment state (``offered``, ``accepted``, ``downloading``, ``installing``...)."""
    consent_required: bool
    ecus: Mapping[str, OfferedImage]
    """ECU serial -> image (read-only)."""
    release_notes_url: str = ""
    """Where the campaign's release notes are, for the HMI ("" when it has none)."""


@dataclass(frozen=True)
class PollResult:
    """One poll's outcome."""

    update: Offer | None
    poll_interval_s: float
    """When the server wants to hear from the vehicle again."""
    changed: bool
    """False when the server answered 304: same as the previous result."""


@dataclass(frozen=True)
class ManifestAck:
    """The backend's answer to a verified vehicle manifest."""

    accepted: bool
    changed_ecus: tuple[str, ...]
    """ECUs whose reported image differs from what the backend knew."""
    assignment: str | None
    """The vehicle's assignment state afterwards (``succeeded`` once every ECU runs its image)."""
