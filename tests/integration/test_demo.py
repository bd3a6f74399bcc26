"""The README's main job runs to its end (it checks every step's status itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import require_tool

ROOT = Path(__file__).resolve().parents[2]


def test_demo_completes_good_and_bad_update(tmp_path: Path) -> None:
    for tool in ("fw_setenv", "mkfs.ext4", "debugfs"):
        require_tool(tool)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/demo/local_ab.py"), "--workdir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rolled-back" in result.stdout
    assert "done: v2 committed on B" in result.stdout
