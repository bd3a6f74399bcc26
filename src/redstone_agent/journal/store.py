"""The atomic JSON record store."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from redstone_agent.errors import RedstoneError

FORMAT_VERSION = 1


class JournalCorrupt(RedstoneError):
    """The journal file exists but does not hold a valid record."""


def _digest(state: dict[str, Any]) -> str:
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """One named record on disk: ``load``, ``save`` and ``clear`` are each atomic."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")

    def load(self) -> dict[str, Any] | None:
        """Return the last saved state, or None when nothing was saved (or it was cleared)."""
        self._remove_torn_temp()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(raw)
            state = record["state"]
            valid = (
                record.get("version") == FORMAT_VERSION
                and isinstance(state, dict)
                and record.get("sha256") == _digest(state)
            )
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise JournalCorrupt(f"{self.path}: journal is corrupt; inspect or remove it")
        return state  # type: ignore[no-any-return]

    def save(self, state: dict[str, Any]) -> None:
        """Durably replace the record with ``state`` (JSON-serialisable)."""
        record = {"version": FORMAT_VERSION, "sha256": _digest(state), "state": state}
        data = json.dumps(record, sort_keys=True, indent=1).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._tmp.replace(self.path)
        fsync_directory(self.path.parent)

    def clear(self) -> None:
        """Durably forget the record."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            fsync_directory(self.path.parent)
        self._remove_torn_temp()

    def _remove_torn_temp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
