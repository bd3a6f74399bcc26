"""The log of one campaign, kept in memory and uploaded to the cloud when it ends.

Support engineers read it next to the report (``redstone-cloud logs --campaign``):
every line the Master and its libraries logged from *syncing* to *done* or
*failed*. The buffer is capped (oldest lines go first, and the upload says
how many), so a campaign that logs a storm never grows the TBox's memory or
exceeds the backend's log cap (docs/api.md §1).
"""

from __future__ import annotations

import logging
from collections import deque

MAX_BYTES = 512 * 1024
"""Below the backend's default ``max_log_bytes`` (1 MiB)."""
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CampaignLog(logging.Handler):
    """Collects formatted log lines between :meth:`start` and :meth:`take`."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(FORMAT))
        self._lines: deque[str] = deque()
        self._size = 0
        self._dropped = 0
        self._max = max_bytes
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    def start(self) -> None:
        """Begin a new campaign's log (drops whatever an earlier one left)."""
        self._lines.clear()
        self._size = self._dropped = 0
        self._active = True

    def emit(self, record: logging.LogRecord) -> None:
        if not self._active:
            return
        try:
            line = self.format(record) + "\n"
        except Exception:  # a broken log call must never break the campaign
            self.handleError(record)
            return
        self._lines.append(line)
        self._size += len(line.encode("utf-8", "replace"))
        while self._size > self._max and len(self._lines) > 1:
            dropped = self._lines.popleft()
            self._size -= len(dropped.encode("utf-8", "replace"))
            self._dropped += 1

    def take(self) -> str:
        """The campaign's log text; collection stops until the next :meth:`start`."""
        self._active = False
        head = f"[{self._dropped} earlier lines dropped]\n" if self._dropped else ""
        text = head + "".join(self._lines)
        self._lines.clear()
        self._size = self._dropped = 0
        return text
