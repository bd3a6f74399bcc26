"""Log lines as JSON objects, one per line, for journald/fleet log shipping.

The engine attaches ``state``, ``seq``, ``error`` and ``target`` to every
transition record (``extra=``); they become top-level keys here so a log
pipeline can filter on them without parsing prose.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Literal

FIELDS = ("state", "seq", "error", "target", "method", "campaign")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", <fields>, "exc"}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def use_log_format(kind: Literal["text", "json"]) -> None:
    """Give every root handler the daemon's format (``log-format`` in ``[sub]``).

    Set on the handlers rather than through ``basicConfig``, which does nothing
    once the CLI has configured logging (and would drop its ``-v`` level).
    """
    formatter = JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
