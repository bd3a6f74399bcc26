"""Fuzz the journal loader: the saved state, nothing (no file), or a one-line JournalCorrupt.

Properties: ``load()`` after ``save(state)`` returns ``state`` for any JSON
state; any file content, and any damaged record, loads as the very state
whose digest it carries or is refused with JournalCorrupt — never another
exception, whatever the bytes (deep nesting, huge integers, invalid UTF-8).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from redstone_agent.journal.store import Journal, JournalCorrupt
from tests.fuzz.profile import fuzz, one_line

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
states = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


def load_bytes(raw: bytes) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "state.json")
        path.write_bytes(raw)
        try:
            return Journal(path).load()
        except JournalCorrupt as exc:
            one_line(exc)
            return None


@fuzz(150)
@given(states)
def test_save_then_load_round_trips(state: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp, "state.json"))
        journal.save(state)
        assert journal.load() == state
        journal.clear()
        assert journal.load() is None


@fuzz(300)
@given(st.binary(max_size=300))
@example(b"[" * 100_000)  # RecursionError from json.loads
@example(b'{"state":{},"version":' + b"1" * 5000 + b"}")  # int digit limit
@example(b"\xff\xfe")
@example(b'{"state":[],"version":1,"sha256":null}')
def test_any_file_content_loads_or_is_corrupt(raw: bytes) -> None:
    state = load_bytes(raw)
    assert state is None or isinstance(state, dict)


@fuzz(200)
@given(states, st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_damaged_record_loads_its_own_state_or_is_corrupt(
    state: dict[str, Any], at: int, value: int, cut: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "state.json")
        Journal(path).save(state)
        raw = path.read_bytes()
    at %= len(raw)
    damaged = raw[:at] if cut else raw[:at] + bytes([value]) + raw[at + 1 :]
    loaded = load_bytes(damaged)
    # Whitespace and escapes may change without changing the state; nothing else may.
    assert loaded is None or loaded == state
