"""JSON log lines carry the engine's transition fields as top-level keys."""

from __future__ import annotations

import json
import logging

from redstone_agent.service.logfmt import JsonFormatter, use_log_format


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


def test_the_configured_format_reaches_handlers_set_up_before_it() -> None:
    # The CLI configures logging before the daemon reads its log-format.
    handler = logging.StreamHandler()
    root = logging.getLogger()
    saved = [(h, h.formatter) for h in root.handlers]  # pytest's own handlers
    root.addHandler(handler)
    try:
        record = logging.LogRecord(
            "redstone.sub", logging.WARNING, __file__, 1, "rebooting", (), None
        )
        use_log_format("text")
        assert handler.format(record).endswith(" WARNING redstone.sub: rebooting")
        use_log_format("json")
        assert json.loads(handler.format(record))["level"] == "WARNING"
    finally:
        root.removeHandler(handler)
        for other, formatter in saved:
            other.setFormatter(formatter)
