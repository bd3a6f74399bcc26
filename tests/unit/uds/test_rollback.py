"""The rollback decision table."""

from __future__ import annotations

import pytest

from redstone_agent.uds.rollback import Outcome, RollbackAction, outcome_of, plan_rollback


@pytest.mark.parametrize(
    ("dual", "previous", "running", "before", "action"),
    [
        (False, False, "1.0", "1.0", RollbackAction.NOTHING),
        (True, False, "1.0", "1.0", RollbackAction.NOTHING),
        (True, False, "2.0-bad", "1.0", RollbackAction.SWITCH_BANK),
        (True, True, None, "1.0", RollbackAction.SWITCH_BANK),
        (False, True, None, "1.0", RollbackAction.REFLASH_PREVIOUS),
        (False, True, None, None, RollbackAction.REFLASH_PREVIOUS),
        (False, False, None, "1.0", RollbackAction.GIVE_UP),
        (False, False, None, None, RollbackAction.GIVE_UP),
    ],
)
def test_plan(
    dual: bool, previous: bool, running: str | None, before: str | None, action: RollbackAction
) -> None:
    assert (
        plan_rollback(
            dual_bank=dual,
            has_previous_image=previous,
            running_version=running,
            version_before=before,
        )
        is action
    )


def test_outcomes() -> None:
    assert outcome_of(RollbackAction.NOTHING) is Outcome.UNCHANGED
    assert outcome_of(RollbackAction.SWITCH_BANK) is Outcome.BANK_SWITCHED
    assert outcome_of(RollbackAction.REFLASH_PREVIOUS) is Outcome.RESTORED
    assert outcome_of(RollbackAction.GIVE_UP) is Outcome.FAILED
