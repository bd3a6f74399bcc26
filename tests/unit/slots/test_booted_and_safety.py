"""Booted-slot detection and the guards that keep the running slot untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.slots import BootedSlotUnknown, UnsafeTarget, booted_slot
from redstone_agent.slots.safety import check_writable_slot, mounted_devices


@pytest.mark.parametrize(
    ("cmdline", "slot"),
    [
        ("root=/dev/vda2 redstone.slot=A quiet", "A"),
        ("redstone.slot=B\n", "B"),
        ("redstone.slot=A redstone.slot=B", "B"),
    ],
)
def test_booted_slot_from_cmdline(tmp_path: Path, cmdline: str, slot: str) -> None:
    path = tmp_path / "cmdline"
    path.write_text(cmdline)
    assert booted_slot(path) == slot


@pytest.mark.parametrize(
    ("cmdline", "message"),
    [
        ("root=/dev/vda2 quiet", "no redstone.slot= on the kernel command line"),
        ("redstone.slot=C", "redstone.slot='C', expected A or B"),
        ("xredstone.slot=A", "no redstone.slot="),
    ],
)
def test_booted_slot_errors(tmp_path: Path, cmdline: str, message: str) -> None:
    path = tmp_path / "cmdline"
    path.write_text(cmdline)
    with pytest.raises(BootedSlotUnknown, match=message):
        booted_slot(path)


def test_unreadable_cmdline(tmp_path: Path) -> None:
    with pytest.raises(BootedSlotUnknown, match="cannot read kernel command line"):
        booted_slot(tmp_path / "absent")


MOUNTINFO = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw shared:2 - proc proc rw
24 22 7:3 / /mnt rw shared:3 - ext4 /dev/loop3 rw
"""


def test_mountinfo_is_read_by_device_number(tmp_path: Path) -> None:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    assert mounted_devices(path) == {(254, 1), (0, 21), (7, 3)}


def test_refuses_the_booted_slot_even_through_a_symlink(tmp_path: Path) -> None:
    running = tmp_path / "slot-A.img"
    running.write_bytes(b"a")
    alias = tmp_path / "alias"
    alias.symlink_to(running)
    (tmp_path / "mountinfo").write_text("")
    with pytest.raises(UnsafeTarget, match="is the running slot"):
        check_writable_slot(alias, running, tmp_path / "mountinfo")


def test_refuses_something_that_is_not_a_slot(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text("")
    with pytest.raises(UnsafeTarget, match="not a block device or regular file"):
        check_writable_slot(Path("/dev/null"), tmp_path / "a", tmp_path / "mountinfo")


def test_accepts_the_inactive_file_slot(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    (tmp_path / "mountinfo").write_text(MOUNTINFO)
    check_writable_slot(tmp_path / "b", tmp_path / "a", tmp_path / "mountinfo")


def test_missing_target_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnsafeTarget, match="cannot access slot device"):
        check_writable_slot(tmp_path / "gone", tmp_path / "a", Path("/proc/self/mountinfo"))
