"""Real U-Boot runs our boot.scr and honours our A/B scheme (docs/boot.md).

Each boot is a QEMU (TCG) power cycle of the qemu-x86 test board: Debian's
U-Boot loads the env from the disk, runs etc/u-boot/boot.cmd, and starts a
Debian kernel whose busybox init checks the slot U-Boot chose and, like the
agent's health check, commits it with fw_setenv or reboots without
committing. The host side is the agent's own code: ``SlotManager`` installs
through loop devices over the disk's partitions, ``UBootEnv`` reads the env.
"""

from __future__ import annotations

import hashlib

import pytest
from tools.qemu.board import Board
from tools.qemu.console import BootRecord
from tools.qemu.layout import ENV
from tools.qemu.rootfs import Health, build_rootfs

from redstone_agent.slots.errors import BootEnvCorrupt
from redstone_agent.slots.scheme import BootState, SlotBoot
from redstone_agent.slots.status import NodeState

pytestmark = [pytest.mark.system, pytest.mark.slow]

ENV_SAVED = "redstone: env saved to virtio 0:4"


def assert_booted(record: BootRecord, slot: str, release: str) -> None:
    """U-Boot chose ``slot`` and Linux really runs it, with that slot's rootfs."""
    assert record.ending != "timeout", record.text[-2000:]
    assert record.uboot_slot == slot, record.script_lines
    assert record.slot == slot, record.guest_lines
    assert f"redstone.slot={slot}" in (record.cmdline or "")
    assert record.release == f"version={release}", record.guest_lines


def install(board: Board, cmdline: str, version: str, health: Health) -> None:
    """``redstone-sub install`` on the running slot, through the agent's SlotManager."""
    image = build_rootfs(board.workdir / f"v{version}.ext4", version, health)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    with board.agent(cmdline) as agent:
        status = agent.install(str(image), sha256=digest)
    assert status.state is NodeState.INSTALLED
    assert board.state().primary == "B"
    assert board.state().slots["B"] == SlotBoot(ok=False, tries=3)


def test_provisioned_disk_boots_committed_slot_a(board: Board) -> None:
    record = board.power_on()

    assert_booted(record, "A", "1")
    assert record.env("before") == BootState.factory("A").to_env()
    assert ENV_SAVED not in record.script_lines  # a committed slot boots without a write
    assert record.health == "ok" and record.committed is None
    assert record.ending == "power-off"
    assert board.state() == BootState.factory("A")


@pytest.mark.root
def test_good_update_is_tried_committed_in_the_guest_and_kept(board: Board) -> None:
    first = board.power_on()
    assert_booted(first, "A", "1")
    assert first.cmdline is not None
    install(board, first.cmdline, "2", Health.OK)

    trial = board.power_on()

    assert_booted(trial, "B", "2")
    assert "redstone: trying slot B, 2 tries left after this one" in trial.script_lines
    assert ENV_SAVED in trial.script_lines
    # U-Boot saved the spent try before starting the kernel.
    assert trial.env("before")["redstone_B_tries"] == "2"
    assert trial.committed == "B"
    assert trial.env("after") == BootState.factory("A").commit("B").to_env()
    assert trial.cmdline is not None
    with board.agent(trial.cmdline) as agent:
        status = agent.status()
    assert status.state is NodeState.IDLE and status.booted == "B" and status.primary == "B"

    again = board.power_on()

    assert_booted(again, "B", "2")
    assert ENV_SAVED not in again.script_lines
    assert not any("trying" in line for line in again.script_lines)
    assert again.committed is None
    assert board.state() == BootState.factory("A").commit("B")


@pytest.mark.root
def test_bad_update_spends_its_tries_then_falls_back_and_agent_reports_rollback(
    board: Board,
) -> None:
    first = board.power_on()
    assert first.cmdline is not None
    install(board, first.cmdline, "2", Health.FAIL)

    for tries_left in (2, 1, 0):
        trial = board.power_on()
        assert_booted(trial, "B", "2")
        assert trial.env("before")["redstone_B_tries"] == str(tries_left)
        assert trial.health == "fail" and trial.committed is None
        assert trial.ending == "reboot"
        assert board.state().slots["B"] == SlotBoot(ok=False, tries=tries_left)

    fallback = board.power_on()

    assert_booted(fallback, "A", "1")
    assert "redstone: skipping slot B (not committed, no tries left)" in fallback.script_lines
    assert ENV_SAVED not in fallback.script_lines
    stored = board.state()
    assert stored.primary == "B" and stored.slots["B"] == SlotBoot(ok=False, tries=0)
    assert fallback.cmdline is not None
    with board.agent(fallback.cmdline) as agent:
        status = agent.status()
    assert status.state is NodeState.ROLLED_BACK and status.booted == "A"
    assert status.rollback is not None and status.rollback["slot"] == "B"
    assert "failed its trial boot" in status.rollback["reason"]
    # The agent on the old slot made it primary again: the next boot needs no skipping.
    assert board.state() == BootState.factory("A").mark_bad("B")


@pytest.mark.root
def test_mark_bad_during_the_trial_returns_to_the_old_slot_on_the_next_boot(board: Board) -> None:
    first = board.power_on()
    assert first.cmdline is not None
    install(board, first.cmdline, "2", Health.FAIL)
    trial = board.power_on()
    assert_booted(trial, "B", "2")
    assert trial.cmdline is not None
    with board.agent(trial.cmdline) as agent:
        assert agent.status().state is NodeState.TRYING
        assert agent.mark_bad("health check failed").state is NodeState.REVERTING

    back = board.power_on()

    assert_booted(back, "A", "1")
    assert ENV_SAVED not in back.script_lines  # two tries were left, none spent
    assert back.cmdline is not None
    with board.agent(back.cmdline) as agent:
        status = agent.status()
    assert status.state is NodeState.ROLLED_BACK and status.rollback is not None
    assert board.state() == BootState.factory("A").mark_bad("B")


def test_kernel_panic_on_trial_boot_falls_back_to_the_committed_slot(board: Board) -> None:
    # The switch as the agent's transaction writes it (BootState through UBootEnv).
    board.install("B", "3", Health.PANIC, tries=2)
    assert board.state() == BootState.factory("A").mark_bad("B").try_slot("B", 2)

    for tries_left in (1, 0):
        trial = board.power_on()
        assert trial.uboot_slot == "B" and trial.slot == "B"
        assert trial.ending == "panic", trial.text[-2000:]
        assert board.state().slots["B"] == SlotBoot(ok=False, tries=tries_left)

    fallback = board.power_on()

    assert_booted(fallback, "A", "1")
    stored = board.state()
    slot, _ = stored.choose()
    assert slot == "A"  # the reference semantics agree with what U-Boot did
    assert stored.primary == "B" and not stored.slots["B"].bootable


def test_corrupt_env_boots_slot_a_from_board_defaults_and_nobody_writes_it(board: Board) -> None:
    with board.disk.open("r+b") as disk:
        disk.seek(ENV.offset + 100)
        byte = disk.read(1)
        disk.seek(ENV.offset + 100)
        disk.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BootEnvCorrupt):
        board.state()
    before = board.disk.read_bytes()[ENV.offset : ENV.offset + ENV.size]

    record = board.power_on()

    assert "board: no valid environment on virtio 0:4, using board defaults" in record.script_lines
    assert "redstone: no A/B environment, booting slot A" in record.script_lines
    assert_booted(record, "A", "1")
    assert "env-unreadable" in record.guest_lines
    assert record.committed is None
    assert board.disk.read_bytes()[ENV.offset : ENV.offset + ENV.size] == before
