"""The harness itself: timeouts stop QEMU, the CLI boots a board and reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tools.qemu.board import Board
from tools.qemu.console import BootRecord
from tools.qemu.errors import HarnessError
from tools.qemu.machine import power_cycle

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.system
def test_a_boot_that_overruns_its_timeout_is_stopped_and_reported(board: Board) -> None:
    console = board.workdir / "short.log"

    cycle = power_cycle(board.disk, console, timeout_s=1.0)

    assert cycle.timed_out and cycle.exit_code is None
    assert BootRecord(console.read_text(errors="replace"), timed_out=True).ending == "timeout"


@pytest.mark.system
def test_qemu_that_cannot_start_is_a_one_line_error_with_its_reason(board: Board) -> None:
    board.disk.unlink()

    with pytest.raises(HarnessError, match=r"no console output: .*disk\.img"):
        board.power_on(timeout_s=30)


def test_opening_a_directory_without_a_board_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="holds no board"):
        Board.open(tmp_path)


@pytest.mark.system
@pytest.mark.slow
def test_cli_boots_a_new_board_and_prints_json(tmp_path: Path, qemu_disk_template: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tools.qemu", "--json", "boot", str(tmp_path / "board")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["uboot_slot"] == summary["linux_slot"] == "A"
    assert summary["ending"] == "power-off"
    assert summary["env"]["redstone_order"] == "A B"
    assert Path(summary["console"]).is_file()
