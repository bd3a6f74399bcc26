"""What a UDS ECU runs, as the one who flashes it journals and reports it.

A UDS ECU has no update agent: it can only say its version (the version
DID), not which Uptane target it runs. So whoever flashes it — the Master
for its own UDS ECUs, a Sub for those behind it — journals the image it
installed (:class:`Installed`) and names it in the ECU's version manifest
only when the version the ECU reports confirms it (:func:`reported_image`).
After a failed flash :func:`describe_outcome` says what the ECU runs now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from redstone_agent.uds.rollback import Outcome

NO_VERSION = "it reports no version (left in its bootloader, or unreachable)"
UNREADABLE = "version unreadable: the ECU is in its bootloader or does not answer"


class ImageFacts(Protocol):
    """A verified image as its journal needs it (sha256 as hex)."""

    @property
    def target(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def length(self) -> int: ...
    @property
    def release_counter(self) -> int: ...
    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class Installed:
    """One image as journaled: what the ECU runs when its version DID says ``version``."""

    target: str
    sha256: str = ""
    """Empty when unknown (the factory image)."""
    length: int = 0
    release_counter: int = 0
    version: str = ""
    """Empty when unknown: then any readable version is taken to be this image."""

    @classmethod
    def of(cls, image: ImageFacts) -> Installed:
        return cls(image.target, image.sha256, image.length, image.release_counter, image.version)

    def matches(self, version: str | None) -> bool:
        return bool(version) and self.version in ("", version)


def reported_image(
    version: str | None, journaled: Installed, pending: Installed | None = None
) -> tuple[Installed, str]:
    """What the ECU's version manifest names, given the version read now, and why.

    The image being flashed (``pending``) or the journaled one when the ECU's
    version confirms it; otherwise the version read (by default an image's
    version is its target name) with no hash and the journaled release counter.
    """
    for known in (pending, journaled):
        if known is not None and known.matches(version):
            return known, f"runs {version}"
    why = (
        f"the ECU reports version {version!r}, not the journaled {journaled.version!r}"
        "; image hash unknown"
        if version
        else UNREADABLE
    )
    return Installed(version or "", release_counter=journaled.release_counter), why


def describe_outcome(outcome: Outcome, version: str | None, *, silent: str = NO_VERSION) -> str:
    """What the ECU runs after a failed flash that ended in ``outcome``, in words;
    ``silent`` when it reports no ``version``."""
    return {
        Outcome.UNCHANGED: f"it still runs {version}",
        Outcome.BANK_SWITCHED: f"it switched back to its other bank and runs {version}",
        Outcome.RESTORED: f"the previous image was flashed back and runs {version}",
        Outcome.CANCELLED: "cancelled; it waits in its bootloader",
    }.get(outcome, f"it runs {version}" if version else silent)
