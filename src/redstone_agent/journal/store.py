"""The atomic JSON record store."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from redstone_agent.errors import RedstoneError

FORMAT_VERSION = 1


class JournalCorrupt(RedstoneError):
    """The journal file exists but does not hold a valid record."""


class StateWriteError(RedstoneError, OSError):
    """State could not be saved (disk full, read-only, I/O error); the old file is intact.

    An ``OSError`` too, so callers that already handle those keep working; a
    ``RedstoneError`` so that a command prints it as its one-line error.
    """

    def __init__(self, path: Path, error: OSError) -> None:
        self.message = f"cannot save {path}: {error.strerror or error}"
        super().__init__(self.message)
        self.errno = error.errno
        self.filename = str(path)

    def __str__(self) -> str:
        return self.message


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


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Durably replace ``path`` with ``data``: a power cut leaves the old file or the new one.

    Writes a unique temporary file beside it, fsyncs it, renames it over
    ``path`` and fsyncs the directory so the rename itself survives. Any
    failure (a full disk) is a one-line :class:`StateWriteError` and leaves no
    temporary file behind.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise StateWriteError(path, error) from error
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, StateWriteError):
            raise StateWriteError(path, error) from error
        raise
    try:
        fsync_directory(path.parent)
    except OSError as error:
        raise StateWriteError(path, error) from error


class Journal:
    """One named record on disk: ``load``, ``save`` and ``clear`` are each atomic."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

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
        except (ValueError, KeyError, TypeError, RecursionError):
            # RecursionError: json.loads of a deeply nested document is garbage too.
            valid = False
        if not valid:
            raise JournalCorrupt(f"{self.path}: journal is corrupt; inspect or remove it")
        return state  # type: ignore[no-any-return]

    def save(self, state: dict[str, Any]) -> None:
        """Durably replace the record with ``state`` (JSON-serialisable)."""
        record = {"version": FORMAT_VERSION, "sha256": _digest(state), "state": state}
        atomic_write(self.path, json.dumps(record, sort_keys=True, indent=1).encode())

    def clear(self) -> None:
        """Durably forget the record."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            fsync_directory(self.path.parent)
        self._remove_torn_temp()

    def _remove_torn_temp(self) -> None:
        """Temporaries left by a power cut during :func:`atomic_write` are garbage."""
        for torn in self.path.parent.glob(f".{self.path.name}.*"):
            with contextlib.suppress(FileNotFoundError):
                torn.unlink()
