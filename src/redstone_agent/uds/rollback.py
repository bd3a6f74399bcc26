"""After the flash: is the new image running? If not, get the previous one back.

Pure decision logic (:func:`plan_rollback`) is separate from the UDS calls so
the rules read like a table: a dual-bank ECU switches back to its other bank
(or already did so itself); a single-bank ECU is re-flashed with the previous
image when we have it; otherwise the ECU stays in its bootloader and the
failure is reported.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How a flash ended; the campaign reports this to the cloud."""

    INSTALLED = "installed"
    UNCHANGED = "unchanged"
    """The flash failed but the previous version still runs (never touched, or the
    ECU's bootloader fell back to its other bank by itself)."""
    BANK_SWITCHED = "bank-switched"
    """Verification failed; the ECU runs its previous bank again."""
    RESTORED = "restored"
    """Verification failed; the previous image was flashed back."""
    FAILED = "failed"
    """Neither the new nor the previous image runs: the ECU waits in its bootloader."""
    CANCELLED = "cancelled"
    """Stopped on request; the ECU waits in its bootloader for a new flash."""


class RollbackAction(StrEnum):
    """What to do after a failed flash or verification."""

    NOTHING = "nothing"
    """The ECU already runs the previous version (its bootloader fell back)."""
    SWITCH_BANK = "switch-bank"
    REFLASH_PREVIOUS = "reflash-previous"
    GIVE_UP = "give-up"


def plan_rollback(
    *,
    dual_bank: bool,
    has_previous_image: bool,
    running_version: str | None,
    version_before: str | None,
) -> RollbackAction:
    """Choose the rollback from what the ECU reports now."""
    if version_before and running_version == version_before:
        return RollbackAction.NOTHING
    if dual_bank:
        return RollbackAction.SWITCH_BANK
    if has_previous_image:
        return RollbackAction.REFLASH_PREVIOUS
    return RollbackAction.GIVE_UP


def outcome_of(action: RollbackAction) -> Outcome:
    """The outcome a successful rollback action reports."""
    return {
        RollbackAction.NOTHING: Outcome.UNCHANGED,
        RollbackAction.SWITCH_BANK: Outcome.BANK_SWITCHED,
        RollbackAction.REFLASH_PREVIOUS: Outcome.RESTORED,
        RollbackAction.GIVE_UP: Outcome.FAILED,
    }[action]
