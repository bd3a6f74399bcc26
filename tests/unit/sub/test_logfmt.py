"""JSON log lines carry the engine's transition fields as top-level keys."""

from __future__ import annotations

import json
import logging

from redstone_agent.sub.logfmt import JsonFormatter


def test_transition_fields_become_keys() -> None:
    record = logging.LogRecord(
        "redstone.sub", logging.INFO, __file__, 1, "state %s", ("READY",), None
    )
    record.state = "READY"
    record.seq = 4
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "state READY"
    assert (entry["state"], entry["seq"], entry["level"]) == ("READY", 4, "INFO")
    assert entry["ts"].endswith("Z")


def test_exceptions_are_kept_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]
