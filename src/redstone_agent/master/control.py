"""What an HMI or an operator may ask of the running Master (the D-Bus API's port).

``master/dbus_api.py`` publishes this on ``org.redstone.Master1``; the daemon
implements it (``master/controller.py``) on top of the engine and the policy.
Commands raise :class:`ControlError` with one line when they do not apply
now (no campaign waits for consent, the commit point is passed, a bundle is
tampered with); the D-Bus layer turns that into a named D-Bus error.

:func:`progress` and :func:`campaign_info` derive the HMI's view from the
journaled :class:`CampaignRecord`, so D-Bus, ``status.json`` and
``redstonectl status --json`` never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from redstone_agent.errors import RedstoneError
from redstone_agent.master.record import CampaignRecord

RecordListener = Callable[[CampaignRecord], None]
LogListener = Callable[[str], None]


class ControlError(RedstoneError):
    """A command that does not apply now; ``code`` names it on D-Bus."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        """One of: NoCampaign, NotWaiting, NotTouched, Busy, PastCommitPoint, BadBundle,
        BadArgument (docs/dbus.md §5)."""


class MasterControl(Protocol):
    """The running Master as the D-Bus API sees it. All methods run on the daemon's loop."""

    @property
    def record(self) -> CampaignRecord:
        """The current campaign record (read-only; a snapshot the caller must not change)."""
        ...

    def subscribe(self, on_record: RecordListener, on_log: LogListener) -> None:
        """Call ``on_record`` after every change (state, step, progress; the daemon
        throttles progress to about twice a second) and ``on_log`` with every log line."""
        ...

    def recent_logs(self, lines: int) -> list[str]:
        """The last ``lines`` log lines of the Master (newest last)."""
        ...

    def check_now(self) -> None:
        """Poll the cloud now (or resume a campaign waiting for its next poll)."""
        ...

    async def accept(self) -> None:
        """Consent to the campaign that waits for it (ControlError NotWaiting otherwise)."""
        ...

    async def decline(self) -> None:
        """Refuse the waiting campaign: it ends all-old (rolled back if ECUs were touched)."""
        ...

    async def postpone(self, seconds: float) -> None:
        """Ask again after ``seconds`` (1 s .. 7 days; BadArgument otherwise)."""
        ...

    async def cancel(self) -> None:
        """Stop the campaign: nothing touched -> failed untouched; ECUs touched -> roll back;
        past the commit point -> ControlError PastCommitPoint."""
        ...

    async def rollback(self) -> None:
        """Roll every touched ECU back now (before the commit point only)."""
        ...

    async def install_bundle(self, path: Path) -> str:
        """Verify an offline bundle exactly like an online campaign and start it;
        return the campaign's name. BadBundle (one line) when it does not verify
        or is meant for another vehicle; Busy while another campaign runs."""
        ...


@dataclass(frozen=True)
class Progress:
    percent: int
    """0..100 over every ECU's current phase."""
    ecu: str
    """The ECU being worked on (the first busy one), "" when none."""
    phase: str
    """The campaign state (``transferring``, ``activating`` ...)."""


BUSY_STEPS = frozenset({"installing", "activating", "committing", "rolling-back", "waiting"})


def progress(record: CampaignRecord) -> Progress:
    """Percent done of the current phase, the ECU in work, the phase."""
    ecus = list(record.ecus.values())
    busy = next((e.serial for e in ecus if e.step in BUSY_STEPS), "")
    total = sum(e.bytes_total for e in ecus)
    if total and record.state.value == "transferring":
        percent = 100 * sum(e.bytes_done for e in ecus) // total
    elif ecus:
        settled = sum(1 for e in ecus if e.step not in BUSY_STEPS and e.step != "pending")
        percent = 100 * settled // len(ecus)
    else:
        percent = 0
    return Progress(max(0, min(100, percent)), busy, record.state.value)


@dataclass(frozen=True)
class CampaignInfo:
    name: str
    ecus: dict[str, tuple[str, str]]
    """serial -> (old, new)."""
    size: int
    """Bytes to download (images and deltas)."""
    release_notes_url: str


def campaign_info(record: CampaignRecord) -> CampaignInfo:
    return CampaignInfo(
        name=record.campaign,
        ecus={s: (e.old, e.new) for s, e in record.ecus.items()},
        size=sum(e.bytes_downloaded for e in record.ecus.values()),
        release_notes_url=record.release_notes_url,
    )
