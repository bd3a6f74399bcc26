"""Reading metadata directories: ngclient's cache and our workspaces share one layout.

DIR/root_history/N.root.json   (or DIR/N.root.json in a published tree)
DIR/<percent-encoded role>.json
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

_ROOT_FILE = re.compile(r"^(\d+)\.root\.json$")


def root_chain(directory: Path) -> tuple[bytes, ...]:
    """Every ``N.root.json`` in ``directory``, in version order."""
    found = sorted(
        (int(m.group(1)), p.read_bytes())
        for p in directory.iterdir()
        if (m := _ROOT_FILE.match(p.name))
    )
    return tuple(data for _, data in found)


def role_files(directory: Path) -> dict[str, bytes]:
    """Unversioned ``<role>.json`` files, keyed by decoded role name."""
    return {unquote(p.name[: -len(".json")]): p.read_bytes() for p in directory.glob("*.json")}
