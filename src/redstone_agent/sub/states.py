"""Which command is allowed in which state: the Sub's transition table.

Read it as the spec: a command not listed for a state is refused with
WRONG_STATE and changes nothing.
"""

from __future__ import annotations

from enum import Enum

from redstone_agent.someip.interface import SubState
from redstone_agent.sub.errors import WrongState

S = SubState


class Command(Enum):
    PUT_METADATA = "PutMetadata"
    INSTALL = "Install"
    ACTIVATE = "Activate"
    COMMIT = "Commit"
    ROLLBACK = "Rollback"
    CANCEL = "Cancel"


_SETTLED = frozenset({S.IDLE, S.COMMITTED, S.ROLLED_BACK, S.FAILED})

ALLOWED: dict[Command, frozenset[SubState]] = {
    Command.PUT_METADATA: _SETTLED | {S.READY},
    Command.INSTALL: _SETTLED,
    Command.ACTIVATE: frozenset({S.READY}),
    Command.COMMIT: frozenset({S.VERIFYING}),
    Command.ROLLBACK: frozenset({S.READY, S.VERIFYING}),
    Command.CANCEL: frozenset({S.TRANSFERRING, S.PROCESSING, S.READY}),
}


def require(command: Command, state: SubState) -> None:
    """Raise :class:`WrongState` unless *command* is allowed in *state*."""
    if state not in ALLOWED[command]:
        allowed = ", ".join(sorted(s.name for s in ALLOWED[command]))
        raise WrongState(f"{command.value} not allowed in {state.name} (only in {allowed})")
