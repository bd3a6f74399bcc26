"""`redstone-master status` as an operator uses it: it says when the daemon behind
the last status is gone, and a reader that leaves early (`... | head`) is not an
error (exit 0, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_status_into_a_closed_pipe_ends_quietly() -> None:
    master = Path(sys.executable).with_name("redstone-master")
    config = ROOT / "etc" / "redstone" / "master.toml"
    proc = subprocess.Popen(
        [str(master), "--config", str(config), "status", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first byte
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_status_says_when_no_daemon_is_behind_it(tmp_path: Path) -> None:
    config = tmp_path / "master.toml"
    example = (ROOT / "etc" / "redstone" / "master.toml").read_text()
    config.write_text(example.replace("/var/lib/redstone/master", str(tmp_path / "state")))
    for name in ("ecus", "vehicle.dbc"):
        (tmp_path / name).symlink_to(ROOT / "etc" / "redstone" / name)
    state = tmp_path / "state"
    state.mkdir()
    (state / "master.pid").write_text("999999999\n")  # a stale pid file after a SIGKILL
    master = Path(sys.executable).with_name("redstone-master")
    done = subprocess.run(
        [str(master), "--config", str(config), "status"], capture_output=True, text=True, check=True
    )
    assert "daemon: not running" in done.stdout
