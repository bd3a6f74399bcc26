"""Precondition rules over CAN signals: parse, check against the DBC, evaluate.

Pure and I/O-free, like the core of python-tuf: the provider only feeds it
samples and a clock reading. Grammar (docs/vehicle.md §2)::

    rule   := SIGNAL OP VALUE
            | SIGNAL "in" LIST
            | SIGNAL "not in" LIST
    OP     := "<=" | "<" | ">=" | ">" | "==" | "!="
    LIST   := "[" VALUE { "," VALUE } "]"
    VALUE  := number | "text" | 'text'

``speed_kph <= 0``, ``battery_v >= 12.2``, ``gear in ["P"]``,
``ignition not in ["OFF", "START"]``. Rules are parsed with :mod:`ast` and
only this shape is accepted; nothing is evaluated as Python.

Enum signals (a DBC value table, e.g. gear P R N D) compare by their choice
names. A signal never received, or last received more than ``freshness_ms``
ago, is *unknown*, and every rule on an unknown signal fails: at exactly
``freshness_ms`` a sample is still fresh, one tick later it is stale.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from redstone_agent.vehicle.errors import RuleError

Scalar = int | float | str
"""A decoded signal value: a number, or an enum signal's choice name."""

EXAMPLES = 'e.g. speed_kph <= 0, gear in ["P"] or ignition != "OFF"'


class Op(StrEnum):
    LE = "<="
    LT = "<"
    GE = ">="
    GT = ">"
    EQ = "=="
    NE = "!="
    IN = "in"
    NOT_IN = "not in"


ORDERING = frozenset({Op.LE, Op.LT, Op.GE, Op.GT})
"""Operators that need numbers on both sides."""
MEMBERSHIP = frozenset({Op.IN, Op.NOT_IN})
"""Operators whose right side is a list."""

_AST_OPS: dict[type[ast.cmpop], Op] = {
    ast.LtE: Op.LE,
    ast.Lt: Op.LT,
    ast.GtE: Op.GE,
    ast.Gt: Op.GT,
    ast.Eq: Op.EQ,
    ast.NotEq: Op.NE,
    ast.In: Op.IN,
    ast.NotIn: Op.NOT_IN,
}


@dataclass(frozen=True)
class Rule:
    """One parsed rule; ``text`` is how it was written (stripped), for messages."""

    text: str
    signal: str
    op: Op
    operand: Scalar | tuple[Scalar, ...]

    def holds(self, value: Scalar) -> bool:
        """Whether the rule holds for a known *value* of its signal."""
        operand = self.operand
        if isinstance(operand, tuple):
            inside = any(_same(value, item) for item in operand)
            return inside if self.op is Op.IN else not inside
        if self.op is Op.EQ:
            return _same(value, operand)
        if self.op is Op.NE:
            return not _same(value, operand)
        if not _is_number(value) or not _is_number(operand):
            return False
        left, right = float(value), float(operand)
        match self.op:
            case Op.LE:
                return left <= right
            case Op.LT:
                return left < right
            case Op.GE:
                return left >= right
            case _:
                return left > right


@dataclass(frozen=True)
class SignalSpec:
    """What the DBC says about a signal, as far as rules care."""

    name: str
    choices: tuple[str, ...] = ()
    """Choice names of an enum signal (value table); empty for a numeric signal."""
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""


@dataclass(frozen=True)
class Sample:
    """The latest decoded value of a signal and when it arrived (monotonic seconds)."""

    value: Scalar
    at: float


@dataclass(frozen=True)
class Blocker:
    """A rule that does not hold now, and why (one line)."""

    rule: str
    signal: str
    value: object | None
    """The live value; None when the signal is unknown (never received or stale)."""
    reason: str


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: Scalar, operand: Scalar) -> bool:
    if _is_number(value) and _is_number(operand):
        return float(value) == float(operand)
    return isinstance(value, str) and isinstance(operand, str) and value == operand


def format_value(value: object) -> str:
    """A signal value as a person reads it: ``0``, ``42.5``, ``D``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _literal(node: ast.expr, source: str, rule: str, where: str) -> Scalar:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
        if isinstance(node.value, bool):
            raise RuleError(rule, f"{node.value} is not a number or quoted text", where)
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and _is_number(node.operand.value)
    ):
        number = node.operand.value
        assert isinstance(number, int | float)
        return -number if isinstance(node.op, ast.USub) else number
    segment = ast.get_source_segment(source, node) or "?"
    if isinstance(node, ast.Name):
        raise RuleError(rule, f'{segment} is not a value: write text in quotes, "{segment}"', where)
    raise RuleError(rule, f"{segment} is not a number or quoted text", where)


def parse_rule(text: str, where: str = "rule") -> Rule:
    """Parse one rule; a RuleError names the rule and what is wrong with it."""
    source = text.strip()
    if not source:
        raise RuleError(text, f"empty rule ({EXAMPLES})", where)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise RuleError(text, f"not a rule ({EXAMPLES})", where) from None
    node = tree.body
    if not isinstance(node, ast.Compare) or len(node.ops) != 1:
        raise RuleError(text, f"expected one comparison: SIGNAL OP VALUE ({EXAMPLES})", where)
    if not isinstance(node.left, ast.Name):
        raise RuleError(text, f"the left side must be a signal name ({EXAMPLES})", where)
    op = _AST_OPS.get(type(node.ops[0]))
    if op is None:
        raise RuleError(text, "unknown operator (use <= < >= > == != in, not in)", where)
    right = node.comparators[0]
    operand: Scalar | tuple[Scalar, ...]
    if op in MEMBERSHIP:
        if not isinstance(right, ast.List):
            raise RuleError(text, f'"{op}" needs a list, e.g. ["P", "N"]', where)
        if not right.elts:
            raise RuleError(text, f'"{op}" needs a non-empty list', where)
        operand = tuple(_literal(item, source, text, where) for item in right.elts)
    else:
        if isinstance(right, ast.List | ast.Tuple):
            raise RuleError(text, f'a list needs "in" or "not in", not "{op}"', where)
        operand = _literal(right, source, text, where)
        if op in ORDERING and not _is_number(operand):
            raise RuleError(text, f'"{op}" compares numbers, not text', where)
    return Rule(source, node.left.id, op, operand)


def parse_rules(texts: Iterable[str], where: str = "rule") -> tuple[Rule, ...]:
    """Parse every rule; the first bad one raises."""
    return tuple(parse_rule(text, where) for text in texts)


def check_rule(rule: Rule, specs: Mapping[str, SignalSpec], dbc: str, where: str = "rule") -> None:
    """Refuse a rule the DBC cannot satisfy: an unknown signal, a choice name the
    enum lacks, text for a number or a number for an enum, a threshold out of range."""
    spec = specs.get(rule.signal)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise RuleError(rule.text, f"{dbc} has no signal {rule.signal} (it has: {known})", where)
    operands = rule.operand if isinstance(rule.operand, tuple) else (rule.operand,)
    if spec.choices:
        names = " ".join(spec.choices)
        if rule.op in ORDERING:
            raise RuleError(
                rule.text,
                f"{spec.name} is an enum ({names}): compare it with == != in / not in",
                where,
            )
        for item in operands:
            if item not in spec.choices:
                shown = f'"{item}"' if isinstance(item, str) else format_value(item)
                raise RuleError(
                    rule.text, f"{spec.name} has no value {shown} in {dbc} (it has: {names})", where
                )
        return
    unit = f" {spec.unit}" if spec.unit else ""
    for item in operands:
        if not _is_number(item):
            raise RuleError(rule.text, f"{spec.name} is a number{unit}, not text", where)
        assert isinstance(item, int | float)
        low, high = spec.minimum, spec.maximum
        if (low is not None and item < low) or (high is not None and item > high):
            span = f"{format_value(low)}..{format_value(high)}{unit}"
            raise RuleError(
                rule.text,
                f"{format_value(item)} is outside {spec.name}'s range {span} in {dbc}",
                where,
            )


def age_ms(sample: Sample, now: float) -> float:
    """Milliseconds since *sample* arrived, to the microsecond (no float noise at a limit)."""
    return round((now - sample.at) * 1000, 3)


def is_fresh(sample: Sample, now: float, freshness_ms: int) -> bool:
    """A sample is fresh up to and including ``freshness_ms`` after it arrived."""
    return age_ms(sample, now) <= freshness_ms


def stale_at(sample: Sample, freshness_ms: int) -> float:
    """The monotonic time after which *sample* is stale."""
    return sample.at + freshness_ms / 1000


def evaluate(rule: Rule, sample: Sample | None, now: float, freshness_ms: int) -> Blocker | None:
    """None when the rule holds; otherwise the Blocker saying why not."""
    name = rule.signal
    if sample is None:
        return Blocker(rule.text, name, None, f"{name} is unknown (never received)")
    if not is_fresh(sample, now, freshness_ms):
        shown = math.ceil(age_ms(sample, now))
        reason = f"{name} is stale (last seen {shown} ms ago, limit {freshness_ms} ms)"
        return Blocker(rule.text, name, None, reason)
    if rule.holds(sample.value):
        return None
    reason = f"{rule.text} fails: {name} = {format_value(sample.value)}"
    return Blocker(rule.text, name, sample.value, reason)


def blockers(
    rules: Iterable[Rule], samples: Mapping[str, Sample], now: float, freshness_ms: int
) -> list[Blocker]:
    """Every rule that does not hold, in rule order; empty when all hold."""
    found = (evaluate(rule, samples.get(rule.signal), now, freshness_ms) for rule in rules)
    return [blocker for blocker in found if blocker is not None]
