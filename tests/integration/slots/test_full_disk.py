"""Slots and state on a full or broken disk: refuse early, say so in one line, keep status."""

from __future__ import annotations

import contextlib
import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from redstone_agent.cli.sub import main
from redstone_agent.slots import InstallFailed, InstallRefused, SlotManager
from redstone_agent.slots.status import NodeState
from redstone_agent.slots.virtual import VirtualNode
from tests.integration.slots.conftest import make_image
from tests.support import require_tool


def test_an_image_larger_than_a_file_slot_is_refused_before_writing(
    node: VirtualNode, manager: SlotManager, tmp_path: Path
) -> None:
    slot = node.config.B.device
    capacity = slot.stat().st_size
    big = make_image(tmp_path / "big.img", capacity + 1)
    before = node.bootenv.load_state()
    with pytest.raises(InstallRefused, match=f"needs {capacity + 1} bytes, slot B .* holds"):
        manager.install(str(big.path), sha256=big.sha256, size=big.size)
    assert node.bootenv.load_state() == before  # not even marked bad: nothing started
    # Without a size the writer stops at the slot's end instead of growing the file.
    with pytest.raises(InstallFailed, match=f"larger than the slot's {capacity} bytes"):
        manager.install(str(big.path), sha256=big.sha256)
    assert slot.stat().st_size == capacity
    assert manager.status().booted == "A"


@contextlib.contextmanager
def full_tmpfs(directory: Path) -> Iterator[None]:
    """``directory`` as a 256 KiB tmpfs, filled to the last byte."""
    require_tool("mount")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> None:
    with (directory / "filler").open("wb", buffering=0) as filler:
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                filler.write(b"\0")
    with pytest.raises(OSError) as full:
        (directory / "probe").write_bytes(b"x")
    assert full.value.errno == errno.ENOSPC


@pytest.mark.root
def test_a_full_state_filesystem_fails_install_in_one_line_and_status_works(
    node: VirtualNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(node.config_toml())
    image = make_image(tmp_path / "v2.img", 100_000)
    state = node.config.state_dir
    with full_tmpfs(state):
        # An earlier install was killed mid-write: status must settle it, and cannot save.
        SlotManager(node.config).journal.save(
            {"phase": "writing", "slot": "B", "from": "A", "sha256": image.sha256, "size": None}
        )
        fill(state)
        code = main(["-c", str(config), "install", str(image.path), "--sha256", image.sha256])
        err = capsys.readouterr().err
        assert code == 1
        assert err.count("\n") == 1 and "No space left on device" in err, err
        assert "Traceback" not in err
        assert main(["-c", str(config), "status", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["booted"] == "A"
        assert any("not settled" in note for note in shown["notes"])
        (state / "filler").unlink()
        settled = SlotManager(node.config).status()
        assert settled.state is NodeState.IDLE and "interrupted" in (settled.last_error or "")
