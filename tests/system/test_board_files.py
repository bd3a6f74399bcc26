"""The board files agree with the disk layout (U-Boot gets the env's place as literals)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tools.qemu import cache
from tools.qemu.disk import BOARD_BOOT_CMD, BOARD_ENV
from tools.qemu.errors import HarnessError
from tools.qemu.initramfs import GUEST_FW_ENV_CONFIG
from tools.qemu.kernel import load_order
from tools.qemu.layout import (
    ENV,
    ENV_SECTORS,
    ENV_SIZE,
    PARTITIONS,
    SCRIPT_A,
    SCRIPT_B,
    SLOTS,
    sfdisk_script,
)

READ = re.compile(r"virtio (read|write) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+)")


def test_env_block_place_is_the_same_in_layout_board_env_and_board_script() -> None:
    for path in (BOARD_ENV, BOARD_BOOT_CMD):
        accesses = [a for a in READ.findall(path.read_text()) if int(a[2], 16) == ENV.start]
        assert accesses, path
        for _, _addr, _lba, count in accesses:
            assert int(count, 16) == ENV_SECTORS, path
        assert f"{ENV_SIZE:#x}" in path.read_text(), path


def test_board_script_reads_both_script_copies_whole_and_nothing_else() -> None:
    """The first stage reads p5 and p6 (whole) and the env; it writes nothing."""
    accesses = READ.findall(BOARD_BOOT_CMD.read_text())
    assert {a[0] for a in accesses} == {"read"}
    places = {(int(lba, 16), int(count, 16)) for _, _addr, lba, count in accesses}
    assert places == {
        (ENV.start, ENV_SECTORS),
        (SCRIPT_A.start, SCRIPT_A.sectors),
        (SCRIPT_B.start, SCRIPT_B.sectors),
    }
    assert all(part in PARTITIONS for part in (SCRIPT_A, SCRIPT_B))


def test_guest_fw_env_config_names_the_env_partition() -> None:
    lines = [
        line.split()
        for line in GUEST_FW_ENV_CONFIG.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == [[ENV.guest_device, "0x0", f"{ENV_SIZE:#x}"]]


def test_board_env_defines_every_hook_boot_cmd_needs() -> None:
    keys = {
        line.split("=", 1)[0]
        for line in BOARD_ENV.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert {"redstone_boot_A", "redstone_boot_B", "redstone_bootargs", "redstone_save_env"} <= keys
    for slot, part in SLOTS.items():
        assert f"root={part.guest_device}" in _value(f"redstone_boot_{slot}")


def _value(key: str) -> str:
    for line in BOARD_ENV.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(key)


def test_partitions_do_not_overlap_and_sfdisk_gets_all_of_them() -> None:
    ends = [part.start + part.sectors for part in PARTITIONS]
    assert all(end <= nxt.start for end, nxt in zip(ends, PARTITIONS[1:], strict=False))
    script = sfdisk_script()
    assert all(f"start={part.start}, size={part.sectors}" in script for part in PARTITIONS)


def test_module_load_order_puts_dependencies_first() -> None:
    modules_dep = (
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\n"
        "kernel/fs/mbcache.ko:\n"
        "kernel/lib/crc16.ko:\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/virtio/virtio.ko:\n"
    )
    order = [p.rsplit("/", 1)[1] for p in load_order(modules_dep, ("virtio_blk", "ext4"))]
    assert order.index("virtio.ko") < order.index("virtio_ring.ko") < order.index("virtio_blk.ko")
    assert order[-1] == "ext4.ko" and len(order) == len(set(order)) == 7


def test_cache_builds_once_reuses_and_prunes_old_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    builds: list[str] = []

    def build(out: Path) -> None:
        builds.append(out.name)
        (out / "artifact").write_text("made")

    first = cache.cached("thing", "k1", build)
    assert cache.cached("thing", "k1", build) == first and len(builds) == 1
    assert (first / "artifact").read_text() == "made"
    for n in range(2, 6):
        cache.cached("thing", f"k{n}", build)
    assert len(list(tmp_path.glob("thing-*"))) == cache.KEEP_PER_KIND
    assert not list(tmp_path.glob(".thing-*"))  # no staging left behind


def test_a_failed_build_leaves_no_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))

    def broken(out: Path) -> None:
        (out / "half").write_text("x")
        raise HarnessError("mkfs failed")

    with pytest.raises(HarnessError):
        cache.cached("thing", "k", broken)
    assert list(tmp_path.iterdir()) == []


def test_input_key_depends_on_file_contents(tmp_path: Path) -> None:
    source = tmp_path / "init"
    source.write_text("v1")
    before = cache.input_key(["x", source])
    source.write_text("v2")
    assert cache.input_key(["x", source]) != before
    assert cache.input_key(["ab", "c"]) != cache.input_key(["a", "bc"])
