"""Vehicle code never depends on the backend: importing the client must not load it."""

from __future__ import annotations

import subprocess
import sys


def test_the_client_does_not_import_the_backend() -> None:
    probe = (
        "import sys, redstone_agent.cloud, redstone_agent.cloud.client;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redstone_cloud'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
