"""The transition table refuses commands outside their states."""

from __future__ import annotations

import pytest

from redstone_agent.someip.interface import ResultCode, SubState
from redstone_agent.sub.errors import WrongState
from redstone_agent.sub.states import ALLOWED, Command, require


@pytest.mark.parametrize("command", list(Command))
@pytest.mark.parametrize("state", list(SubState))
def test_require_follows_the_table(command: Command, state: SubState) -> None:
    if state in ALLOWED[command]:
        require(command, state)
    else:
        with pytest.raises(WrongState, match=command.value) as refused:
            require(command, state)
        assert refused.value.code is ResultCode.WRONG_STATE


def test_no_install_while_an_update_is_in_flight() -> None:
    busy = {
        SubState.TRANSFERRING,
        SubState.PROCESSING,
        SubState.READY,
        SubState.ACTIVATING,
        SubState.VERIFYING,
        SubState.ROLLING_BACK,
    }
    assert not busy & ALLOWED[Command.INSTALL]
