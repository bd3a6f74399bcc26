"""Reading a running daemon's journal from outside, without touching it.

:meth:`redstone_agent.journal.Journal.load` is for the journal's owner: it
also sweeps the temporaries of torn writes, which is right when a daemon
starts and wrong for an observer — it would delete the temporary a running
daemon is about to rename over its journal, and that daemon's next save
fails. The virtual vehicle (and tests) watch Subs and the Master while they
run, so they read here: the file only, never a write. ``rename`` replaces a
journal atomically, so a read sees the old record or the new one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def peek_journal(path: Path) -> dict[str, Any]:
    """The state the journal at *path* holds; empty when there is none (or it does not parse)."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    state = record.get("state") if isinstance(record, dict) else None
    return state if isinstance(state, dict) else {}
