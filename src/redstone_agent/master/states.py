"""The campaign's transition table and what a restart does in each state.

Read it as the spec (docs/master.md §2 prints the same tables). The engine
moves only along :data:`NEXT`; :func:`require` refuses anything else, naming
both states. :data:`ON_RESTART` is how :meth:`Engine.recover` decides after
the Master was killed: before the commit point every state either resumes
(nothing irreversible happened, or the ECU ports re-run idempotently) or rolls
back; from COMMITTING on the campaign only moves forward. :data:`SCOPE` says
which ECUs a state acts on: the TBox's own ones (boot script, rootfs) wait
until every other ECU runs its new image, and the TBox reboots last
(docs/master.md §2, "The TBox itself").
"""

from __future__ import annotations

from enum import StrEnum

from redstone_agent.master.errors import MasterError
from redstone_agent.master.topology import Tier


class CampaignState(StrEnum):
    IDLE = "idle"
    """No campaign, or the last one is reported; polling."""
    SYNCING = "syncing"
    """Manifest uploaded; metadata fetched and fully verified (both repositories)."""
    DOWNLOADING = "downloading"
    """Verified targets going into the cache (resumable)."""
    AWAITING = "awaiting"
    """Everything downloaded; waiting for consent and vehicle-state preconditions."""
    TRANSFERRING = "transferring"
    """Subs stream their image into the inactive slot; UDS ECUs are flashed."""
    PROCESSING = "processing"
    """Checking that every ECU holds the new image before anything runs it."""
    ACTIVATING = "activating"
    """Subs reboot into their new slot; their health checks run."""
    VERIFYING = "verifying"
    """Every ECU must report the new image running and healthy."""
    UPDATING_TBOX = "updating-tbox"
    """Every other ECU runs its new image on trial: the TBox's boot script is written and
    switched, its inactive rootfs slot written, verified and primed for one trial boot."""
    TBOX_TRIAL = "tbox-trial"
    """The TBox reboots into its new slot. The Master that comes up decides: on the new
    slot it runs its health check, then commits or rejects the slot and reboots back;
    on the old slot (rejected, or the bootloader fell back) it rolls back."""
    COMMITTING = "committing"
    """The commit point is passed: every ECU is made permanent; forward only."""
    ROLLING_BACK = "rolling-back"
    """A failure before the commit point: every touched ECU goes back to its old image."""
    DONE = "done"
    """All ECUs run the new images (all-new)."""
    FAILED = "failed"
    """The campaign did not happen; every ECU runs its old image (all-old)."""


S = CampaignState

_FORWARD_FAILS = frozenset({S.ROLLING_BACK})
_SETTLED = frozenset({S.IDLE, S.DONE, S.FAILED})

NEXT: dict[CampaignState, frozenset[CampaignState]] = {
    S.IDLE: frozenset({S.SYNCING}),
    S.SYNCING: frozenset({S.DOWNLOADING, S.FAILED, S.IDLE}),
    S.DOWNLOADING: frozenset({S.AWAITING, S.FAILED}),
    S.AWAITING: frozenset({S.AWAITING, S.TRANSFERRING, S.FAILED}),
    S.TRANSFERRING: frozenset({S.PROCESSING}) | _FORWARD_FAILS,
    S.PROCESSING: frozenset({S.ACTIVATING}) | _FORWARD_FAILS,
    S.ACTIVATING: frozenset({S.VERIFYING}) | _FORWARD_FAILS,
    S.VERIFYING: frozenset({S.UPDATING_TBOX, S.COMMITTING}) | _FORWARD_FAILS,
    S.UPDATING_TBOX: frozenset({S.TBOX_TRIAL}) | _FORWARD_FAILS,
    S.TBOX_TRIAL: frozenset({S.COMMITTING}) | _FORWARD_FAILS,
    S.COMMITTING: frozenset({S.DONE}),
    S.ROLLING_BACK: frozenset({S.FAILED}),
    S.DONE: frozenset({S.SYNCING, S.IDLE}),
    S.FAILED: frozenset({S.SYNCING, S.IDLE}),
}
"""Which state may follow which. Staying in a state is a journaled no-op only where listed."""


class Restart(StrEnum):
    """What :meth:`Engine.recover` does when the journal shows a state."""

    NOTHING = "nothing"
    RESUME = "resume"
    """Run the state again: nothing irreversible yet, or ECU ports converge idempotently."""
    ROLL_BACK = "roll back"
    FINISH = "finish"
    """Past the commit point: complete the commit."""
    ASSESS = "assess the TBox's boot"
    """Ask the TBox's slots where the reboot left it: primed but not rebooted -> reboot;
    on the new slot -> health check, then commit or reject and reboot back; back on
    the old slot -> roll back."""


ON_RESTART: dict[CampaignState, Restart] = {
    S.IDLE: Restart.NOTHING,
    S.SYNCING: Restart.RESUME,
    S.DOWNLOADING: Restart.RESUME,
    S.AWAITING: Restart.RESUME,
    S.TRANSFERRING: Restart.RESUME,
    S.PROCESSING: Restart.RESUME,
    S.ACTIVATING: Restart.RESUME,
    S.VERIFYING: Restart.RESUME,
    S.UPDATING_TBOX: Restart.RESUME,
    S.TBOX_TRIAL: Restart.ASSESS,
    S.COMMITTING: Restart.FINISH,
    S.ROLLING_BACK: Restart.ROLL_BACK,
    S.DONE: Restart.NOTHING,
    S.FAILED: Restart.NOTHING,
}

ECU_TOUCHING = frozenset(
    {S.TRANSFERRING, S.PROCESSING, S.ACTIVATING, S.VERIFYING, S.UPDATING_TBOX, S.TBOX_TRIAL}
)
"""States in which a failure means rolling ECUs back (before them nothing was touched)."""

V, T = Tier.VEHICLE, Tier.TBOX
SCOPE: dict[CampaignState, tuple[Tier, ...]] = {
    S.TRANSFERRING: (V,),
    S.PROCESSING: (V,),
    S.ACTIVATING: (V,),
    S.VERIFYING: (V,),
    S.UPDATING_TBOX: (T,),
    S.TBOX_TRIAL: (T,),
    S.COMMITTING: (T, V),
    S.ROLLING_BACK: (T, V),
}
"""Which ECUs a state's phase acts on, tier after tier. The TBox's own ECUs start only
once every other ECU runs its new image (the TBox reboots last); they commit first (a
reboot before its commit would spend a try of the TBox's trial slot) and are undone
first (their undo does not wait for the vehicle)."""

SETTLED = _SETTLED


class IllegalTransition(MasterError):
    """The engine tried a move the table does not allow (a bug, never user input)."""


def require(current: CampaignState, new: CampaignState) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is in :data:`NEXT`."""
    if new not in NEXT[current]:
        allowed = ", ".join(sorted(s.value for s in NEXT[current]))
        raise IllegalTransition(f"{current.value} -> {new.value} not allowed (only to {allowed})")
