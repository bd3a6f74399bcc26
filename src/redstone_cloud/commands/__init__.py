"""``redstone-cloud`` subcommands, one module per resource (``cli`` composes them).

Each module offers ``add(subparsers)``; its handlers take ``(backend, args)`` and
return what the CLI prints (``--json`` or indented JSON).
"""

from __future__ import annotations

import getpass


def actor() -> str:
    """Who an admin subcommand is audited as: ``cli:<user>``."""
    return f"cli:{getpass.getuser()}"
