"""Real U-Boot runs the boot script from the copy the env selects, and a torn copy never boots.

One board, four power cycles (docs/boot.md, "Boot script and bootloader update").
The host side is the agent's :class:`BootScriptStore` on the disk image's p5/p6
(file regions) and the env partition, as the Master's bootloader port drives it;
the first stage is tools/qemu/board-boot.cmd on Debian's qemu-x86 U-Boot.

1. a write torn inside the header, never switched: the old script runs from A;
2. a write torn one byte short, the env switched to it anyway: the first stage
   finds B invalid (iminfo: data CRC) and runs A — old script, right slot;
3. the new script (boot.cmd plus a marker line) installed and activated, a new
   rootfs in slot B on trial: the new script runs from B and boots slot B;
4. rollback before commit: the old script runs from A again (and boots slot B,
   which the guest committed in 3).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from tools.qemu.board import Board
from tools.qemu.console import BootRecord
from tools.qemu.disk import BOOT_CMD
from tools.qemu.layout import SCRIPT_A, SCRIPT_B
from tools.qemu.rootfs import Health

from redstone_agent.slots.bootscript import (
    BootScriptError,
    BootScriptRefused,
    BootScriptState,
    BootScriptStore,
)
from redstone_agent.slots.bootscript_config import BootScriptConfig, CopyConfig

pytestmark = [pytest.mark.system, pytest.mark.slow]

MARKER = "redstone: boot script marker 2"


def store_for(board: Board) -> BootScriptStore:
    copies = {
        name: CopyConfig(board.disk, part.offset, part.size)
        for name, part in (("A", SCRIPT_A), ("B", SCRIPT_B))
    }
    config = BootScriptConfig(
        copies=copies,
        uboot=board.bootenv.config,
        state_dir=board.workdir / "state",
        require_redundant_env=False,  # the board script cannot write a redundant env
    )
    return BootScriptStore(config, board.bootenv)


def new_script(workdir: Path) -> tuple[Path, str, int]:
    """etc/u-boot/boot.cmd with a marker line first, compiled like the product's."""
    source = workdir / "boot-2.cmd"
    source.write_text(f'echo "{MARKER}"\n' + BOOT_CMD.read_text())
    out = workdir / "boot-2.scr"
    subprocess.run(
        ["mkimage", "-A", "arm", "-T", "script", "-C", "none", "-n", "Redstone A/B 2"]
        + ["-d", str(source), str(out)],
        check=True,
        capture_output=True,
    )
    data = out.read_bytes()
    return out, hashlib.sha256(data).hexdigest(), len(data)


def torn_install(
    store: BootScriptStore, image: tuple[Path, str, int], keep: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's install with the power cut after ``keep`` bytes reached the copy."""
    real = os.pwrite

    def cut(fd: int, data: bytes, offset: int) -> int:
        real(fd, bytes(data)[:keep], offset)
        raise OSError(5, "power cut")

    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", cut)
        with pytest.raises(BootScriptError, match="power cut"):
            store.install(*image)
    assert store.status().state is BootScriptState.INTERRUPTED


def script_copy(record: BootRecord) -> str:
    lines = [line for line in record.script_lines if line.startswith("board: running boot script")]
    assert len(lines) == 1, record.text[-3000:]
    return lines[0]


def test_torn_switched_and_rolled_back_boot_scripts(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_for(board)
    old_sha = store.status().copies["A"].sha256
    assert store.status().holds("B", old_sha)  # the template's two identical copies
    image = new_script(board.workdir)

    # 1. torn inside the header (40 of 64 bytes), never switched
    torn_install(store, image, 40, monkeypatch)
    record = board.power_on()
    assert script_copy(record) == "board: running boot script copy A (selected)"
    assert MARKER not in record.script_lines and record.slot == "A"

    # 2. torn one byte short of the end (only the data CRC can tell), then switched anyway
    torn_install(store, image, image[2] - 1, monkeypatch)
    with pytest.raises(BootScriptRefused, match="does not hold the installed boot script"):
        store.activate()
    board.bootenv.write({"redstone_script": "B"})  # as if the env pointed at it regardless
    record = board.power_on()
    assert "board: boot script copy B is invalid" in record.script_lines
    assert "Bad Data CRC" in record.text
    assert script_copy(record) == "board: running boot script copy A (fallback, B selected)"
    assert MARKER not in record.script_lines and record.slot == "A"
    board.bootenv.write({"redstone_script": "A"})
    store.rollback()

    # 3. the new script installed and activated; a new rootfs on trial in slot B
    store.install(*image)
    store.activate(image[1])
    board.install("B", "2", Health.OK, tries=2)
    record = board.power_on()
    assert script_copy(record) == "board: running boot script copy B (selected)"
    assert MARKER in record.script_lines
    assert record.uboot_slot == record.slot == "B" and record.committed == "B"
    assert store.status().state is BootScriptState.ACTIVATED

    # 4. rolled back before commit (the campaign failed elsewhere): the old script again
    store.rollback()
    assert store.status().state is BootScriptState.IDLE
    assert store.status().holds("B", image[1])  # nothing lost: the next install reuses it
    record = board.power_on()
    assert script_copy(record) == "board: running boot script copy A (selected)"
    assert MARKER not in record.script_lines
    assert record.uboot_slot == record.slot == "B"  # the slot committed in 3 stays
