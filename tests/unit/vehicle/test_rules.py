"""Rules: the grammar, the DBC checks, and evaluation at every boundary."""

from __future__ import annotations

import pytest

from redstone_agent.config import ConfigError
from redstone_agent.vehicle.errors import RuleError
from redstone_agent.vehicle.rules import (
    Blocker,
    Op,
    Rule,
    Sample,
    SignalSpec,
    blockers,
    check_rule,
    evaluate,
    format_value,
    is_fresh,
    parse_rule,
)

SPECS = {
    "speed_kph": SignalSpec("speed_kph", minimum=0, maximum=327.67, unit="km/h"),
    "battery_v": SignalSpec("battery_v", minimum=0, maximum=40.95, unit="V"),
    "gear": SignalSpec("gear", choices=("P", "R", "N", "D", "invalid")),
}
NOW = 100.0
FRESH = 1000


def holds(text: str, value: int | float | str) -> bool:
    return evaluate(parse_rule(text), Sample(value, NOW), NOW, FRESH) is None


# -- parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "operand"),
    [
        ("speed_kph <= 0", Op.LE, 0),
        ("speed_kph<0.5", Op.LT, 0.5),
        ("battery_v >= 12.2", Op.GE, 12.2),
        ("soc_pct > 30", Op.GT, 30),
        ('gear == "P"', Op.EQ, "P"),
        ("gear != 'D'", Op.NE, "D"),
        ("temp_c >= -20", Op.GE, -20),
        ('gear in ["P", "N"]', Op.IN, ("P", "N")),
        ('ignition not in ["OFF", "START"]', Op.NOT_IN, ("OFF", "START")),
        ("mode in [1, 2.5]", Op.IN, (1, 2.5)),
    ],
)
def test_parse(text: str, op: Op, operand: object) -> None:
    rule = parse_rule(f"  {text} ")
    assert (rule.text, rule.op, rule.operand) == (text, op, operand)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty rule"),
        ("speed_kph <== 0", "not a rule"),
        ("speed_kph", "expected one comparison"),
        ("0 <= speed_kph", "the left side must be a signal name"),
        ("0 <= speed_kph <= 5", "expected one comparison"),
        ("gear == P", 'write text in quotes, "P"'),
        ('gear in ["P", D]', 'write text in quotes, "D"'),
        ('gear < "P"', "compares numbers, not text"),
        ("gear in P", "needs a list"),
        ("gear in []", "non-empty list"),
        ('gear == ["P"]', 'a list needs "in" or "not in"'),
        ("gear is None", "unknown operator"),
        ("gear == True", "not a number or quoted text"),
        ("speed_kph <= len(x)", "not a number or quoted text"),
        ("__import__('os').system('true')", "expected one comparison"),
    ],
)
def test_malformed_rule_is_one_line_naming_the_rule(text: str, problem: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(text, "master.vehicle.rules")
    message = str(caught.value)
    assert message.startswith(f"master.vehicle.rules: {text!r}: ")
    assert problem in message
    assert "\n" not in message
    assert isinstance(caught.value, ConfigError)


# -- checks against the DBC --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "speedkph <= 0",
            "vehicle.dbc has no signal speedkph (it has: battery_v, gear, speed_kph)",
        ),
        ("gear <= 1", "gear is an enum (P R N D invalid): compare it with == != in / not in"),
        ('gear in ["P", "X"]', 'gear has no value "X" in vehicle.dbc'),
        ("gear == 0", "gear has no value 0"),
        ('speed_kph == "P"', "speed_kph is a number km/h, not text"),
        ("battery_v >= 122", "122 is outside battery_v's range 0..40.95 V in vehicle.dbc"),
        ("speed_kph >= -1", "outside speed_kph's range"),
    ],
)
def test_rule_the_dbc_cannot_satisfy(text: str, problem: str) -> None:
    with pytest.raises(RuleError) as caught:
        check_rule(parse_rule(text), SPECS, "vehicle.dbc", "master.vehicle.rules")
    assert problem in str(caught.value)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    "text", ["speed_kph <= 0", "battery_v >= 12.2", 'gear in ["P", "N"]', 'gear != "D"']
)
def test_rule_the_dbc_can_satisfy(text: str) -> None:
    check_rule(parse_rule(text), SPECS, "vehicle.dbc")


# -- evaluation at the boundaries --------------------------------------------------


def test_speed_zero_holds_and_a_hundredth_does_not() -> None:
    assert holds("speed_kph <= 0", 0)
    assert holds("speed_kph <= 0", 0.0)
    assert not holds("speed_kph <= 0", 0.01)


def test_battery_threshold_is_inclusive() -> None:
    assert not holds("battery_v >= 12.2", 12.19)
    assert holds("battery_v >= 12.2", 12.2)
    assert holds("battery_v > 12.19", 12.2)
    assert not holds("battery_v > 12.2", 12.2)
    assert holds("battery_v < 12.2", 12.19)
    assert not holds("battery_v < 12.2", 12.2)


def test_gear_membership() -> None:
    assert holds('gear in ["P"]', "P")
    assert not holds('gear in ["P"]', "D")
    assert holds('gear not in ["D", "R"]', "N")
    assert not holds('gear not in ["D", "R"]', "R")
    assert holds('gear == "P"', "P")
    assert holds('gear != "P"', "D")


def test_equality_of_numbers_ignores_int_and_float() -> None:
    assert holds("mode == 2", 2.0)
    assert holds("mode in [1, 2]", 2.0)
    assert not holds("mode == 2", "2")


def test_a_number_rule_on_text_fails_instead_of_raising() -> None:
    assert not holds("speed_kph <= 0", "P")


def test_failing_rule_says_the_live_value() -> None:
    blocker = evaluate(parse_rule("speed_kph <= 0"), Sample(42.5, NOW), NOW, FRESH)
    assert blocker == Blocker(
        "speed_kph <= 0", "speed_kph", 42.5, "speed_kph <= 0 fails: speed_kph = 42.5"
    )
    gear = evaluate(parse_rule('gear in ["P"]'), Sample("D", NOW), NOW, FRESH)
    assert gear is not None and gear.reason == 'gear in ["P"] fails: gear = D'


def test_never_seen_signal_is_unknown_and_fails() -> None:
    blocker = evaluate(parse_rule("speed_kph <= 0"), None, NOW, FRESH)
    assert blocker == Blocker(
        "speed_kph <= 0", "speed_kph", None, "speed_kph is unknown (never received)"
    )


def test_fresh_at_exactly_the_limit_stale_just_after() -> None:
    rule = parse_rule("speed_kph <= 0")
    sample = Sample(0, 10.0)
    assert is_fresh(sample, 11.0, 1000)
    assert evaluate(rule, sample, 11.0, 1000) is None
    assert not is_fresh(sample, 11.001, 1000)
    blocker = evaluate(rule, sample, 11.001, 1000)
    assert blocker == Blocker(
        "speed_kph <= 0",
        "speed_kph",
        None,
        "speed_kph is stale (last seen 1001 ms ago, limit 1000 ms)",
    )


def test_staleness_limit_has_no_float_noise() -> None:
    # 0.3 - 0.1 is 0.19999999999999998 in binary; 1.3 - 0.3 is 1.0000000000000002.
    assert is_fresh(Sample(0, 0.3), 1.3, 1000)
    assert is_fresh(Sample(0, 0.1), 0.3, 200)


def test_stale_reason_from_the_brief() -> None:
    blocker = evaluate(parse_rule("speed_kph <= 0"), Sample(0, 8.55), 10.0, 1000)
    assert blocker is not None
    assert blocker.reason == "speed_kph is stale (last seen 1450 ms ago, limit 1000 ms)"


def test_blockers_in_rule_order_and_empty_when_all_hold() -> None:
    rules = [parse_rule(t) for t in ("speed_kph <= 0", 'gear in ["P"]', "battery_v >= 12.2")]
    parked = {"speed_kph": Sample(0, NOW), "gear": Sample("P", NOW), "battery_v": Sample(12.6, NOW)}
    assert blockers(rules, parked, NOW, FRESH) == []
    driving = parked | {"speed_kph": Sample(30, NOW), "gear": Sample("D", NOW)}
    assert [b.signal for b in blockers(rules, driving, NOW, FRESH)] == ["speed_kph", "gear"]


def test_format_value() -> None:
    assert format_value(0.0) == "0"
    assert format_value(12.2) == "12.2"
    assert format_value(3) == "3"
    assert format_value("P") == "P"


def test_rule_is_frozen() -> None:
    rule = Rule("x <= 1", "x", Op.LE, 1)
    with pytest.raises(AttributeError):
        rule.signal = "y"  # type: ignore[misc]
