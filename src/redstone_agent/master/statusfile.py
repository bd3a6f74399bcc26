"""The files a running Master leaves for its command line: ``<state-dir>/status.json``
(the last published campaign record) and ``<state-dir>/master.pid``.

Kept apart from :mod:`.daemon` so that ``redstone-master status`` and ``check-now``
import only this: the daemon's module pulls in the cloud client, TUF, aiohttp and
the UDS stack, about a second of imports for a command that reads one file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from redstone_agent.errors import RedstoneError
from redstone_agent.master.record import CampaignRecord

STATUS_FILE = "status.json"
PID_FILE = "master.pid"


def read_status(state_dir: Path) -> dict[str, Any]:
    """The last published status (for the CLI); idle when the daemon never ran."""
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text())
    except FileNotFoundError:
        return CampaignRecord().to_dict()
    except (OSError, ValueError) as exc:
        raise RedstoneError(f"cannot read {state_dir / STATUS_FILE}: {exc}") from None
    if not isinstance(data, dict):
        raise RedstoneError(f"{state_dir / STATUS_FILE}: not a status object")
    return data


def running_pid(state_dir: Path) -> int | None:
    """The running daemon's pid (its pid file names a live process), else None."""
    try:
        pid = int((state_dir / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def signal_daemon(state_dir: Path, signum: int) -> int:
    """Send ``signum`` to the running daemon (pid file); return its pid."""
    try:
        pid = int((state_dir / PID_FILE).read_text())
        os.kill(pid, signum)
    except (OSError, ValueError):
        raise RedstoneError(
            f"no running redstone-master for {state_dir} (pid file {PID_FILE} missing or stale)"
        ) from None
    return pid
