"""The A/B variable scheme: parsing, operations, and the boot script's choice."""

from __future__ import annotations

import pytest

from redstone_agent.slots.scheme import BootState, SchemeError, SlotBoot, other_slot

FACTORY = BootState.factory("A")


def env(order: str = "A B", a: str = "1 0", b: str = "0 0") -> dict[str, str]:
    (a_ok, a_tries), (b_ok, b_tries) = a.split(), b.split()
    return {
        "redstone_order": order,
        "redstone_A_ok": a_ok,
        "redstone_A_tries": a_tries,
        "redstone_B_ok": b_ok,
        "redstone_B_tries": b_tries,
        "bootcmd": "unrelated",
    }


def test_round_trip() -> None:
    state = BootState.parse(env("B A", "1 0", "0 3"))
    assert state.primary == "B"
    assert state.slots["B"] == SlotBoot(ok=False, tries=3)
    assert BootState.parse(state.to_env()) == state


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redstone_order": None}, "redstone_order is not set"),
        ({"redstone_order": "A"}, "expected 'A B' or 'B A'"),
        ({"redstone_order": "A A"}, "expected 'A B' or 'B A'"),
        ({"redstone_order": "A C"}, "expected 'A B' or 'B A'"),
        ({"redstone_A_ok": "yes"}, "redstone_A_ok='yes': expected 0 or 1"),
        ({"redstone_B_tries": "10"}, "expected 0 to 9"),
        ({"redstone_B_tries": "-1"}, "expected 0 to 9"),
    ],
)
def test_invalid_values_are_rejected(values: dict[str, str | None], message: str) -> None:
    raw = {k: v for k, v in {**env(), **values}.items() if v is not None}
    with pytest.raises(SchemeError, match=message):
        BootState.parse(raw)


def test_install_cycle_then_commit() -> None:
    state = FACTORY.mark_bad("B").try_slot("B", 3)
    assert state.primary == "B" and state.slots["B"] == SlotBoot(False, 3)
    slot, state = state.choose()
    assert slot == "B" and state.slots["B"].tries == 2
    state = state.commit("B")
    assert state.primary == "B" and state.slots["B"].ok
    assert state.choose() == ("B", state)  # a committed slot spends no tries


def test_trial_that_never_commits_falls_back_after_its_tries() -> None:
    state = FACTORY.try_slot("B", 2)
    booted = []
    for _ in range(4):
        slot, state = state.choose()
        booted.append(slot)
    assert booted == ["B", "B", "A", "A"]
    assert state.slots["B"] == SlotBoot(ok=False, tries=0)


def test_marked_bad_slot_is_never_booted_while_the_other_is_good() -> None:
    state = FACTORY.mark_bad("B")
    assert state.primary == "A"
    assert state.choose()[0] == "A"


def test_nothing_bootable_still_tries_the_primary() -> None:
    state = BootState(order=("B", "A"), slots={"A": SlotBoot(False, 0), "B": SlotBoot(False, 0)})
    assert state.choose() == ("B", state)


def test_tries_are_bounded() -> None:
    with pytest.raises(SchemeError):
        FACTORY.try_slot("B", 0)
    with pytest.raises(SchemeError):
        FACTORY.try_slot("B", 10)


def test_other_slot() -> None:
    assert other_slot("A") == "B" and other_slot("B") == "A"
    with pytest.raises(SchemeError, match="unknown slot 'C'"):
        other_slot("C")
