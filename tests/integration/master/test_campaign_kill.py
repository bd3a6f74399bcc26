"""The Master SIGKILLed in every state of its campaign table, then started again.

For each state the real ``redstone-master`` runs with
``REDSTONE_MASTER_KILL_IN=<state>`` (docs/master.md §8): it journals that
state and kills itself before the state's step runs — a power cut at the
worst moment. Started again without the variable it must converge, checked
by reading every ECU's real version: never mixed, and the way
``states.ON_RESTART`` says — *committing* finishes (all-new: the commit point
is passed), *rolling-back* finishes the rollback (all-old), every other state
resumes, and since nothing else fails in these campaigns a resumed campaign
ends all-new (a rollback there would be a spurious one: a bug). The cloud
learns the outcome from the signed manifest. One vehicle serves every state
(module fixture); each state ships its own release.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from redstone_agent.master.states import ON_RESTART, SCOPE, SETTLED, CampaignState, Restart
from redstone_agent.master.topology import Tier
from tests.integration.master.campaign_support import Car, build_car

pytestmark = [pytest.mark.slow, pytest.mark.root]

KILLED_IN = [s for s in CampaignState if s not in SETTLED and SCOPE.get(s) != (Tier.TBOX,)]
"""Every state a campaign passes through (idle, done and failed are where it rests).
The TBox's own states need a campaign that updates it: tests/unit/master/test_self_update.py
and tests/integration/master/test_campaign_tbox.py kill the Master in those."""


@pytest.fixture(scope="module")
def car(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Car]:
    yield from build_car(tmp_path_factory, "campaign-kill")


def test_every_state_but_the_resting_ones_is_killed() -> None:
    assert [s.value for s in KILLED_IN] == [
        "syncing",
        "downloading",
        "awaiting",
        "transferring",
        "processing",
        "activating",
        "verifying",
        "committing",
        "rolling-back",
    ]


@pytest.mark.parametrize("state", KILLED_IN, ids=[s.value for s in KILLED_IN])
def test_master_killed_in_state_converges(car: Car, state: CampaignState) -> None:
    old = car.current
    failing = state is CampaignState.ROLLING_BACK  # only a failure leads there
    with car.diagnosed():
        if failing:
            car.vehicle.inject_check_failure()
        try:
            car.tbox.stop()  # the next start carries the fault injection
            campaign, new = car.offer()
            code = car.kill_master_in(state.value)
            assert code == -signal.SIGKILL, f"redstone-master ended with {code}, not SIGKILL"
            assert car.journaled_state() == state.value

            report = car.run(campaign)  # started again, without the variable
        finally:
            if failing:
                car.vehicle.clear_faults()

        now = car.assert_all_new_or_old(old, new)
        expected = old if ON_RESTART[state] is Restart.ROLL_BACK else new
        assert now == expected, f"killed in {state.value} ({ON_RESTART[state].value}): runs {now}"
        outcome = "updated" if now == new else "rolled-back"
        assert (report["campaign"], report["outcome"]) == (campaign, outcome), report
        car.assert_rows(report, old, new, *((outcome, "unchanged") if now == old else (outcome,)))
        car.assert_cloud_learns(campaign, now, "succeeded" if now == new else "failed")
