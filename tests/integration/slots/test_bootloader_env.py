"""Both env backends against the real tools (fw_setenv / grub-editenv) on env files."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.slots.bootloader import BootEnv, GrubEnv, UBootEnv
from redstone_agent.slots.config import GrubConfig, UBootConfig
from redstone_agent.slots.errors import BootEnvCorrupt, BootloaderError
from redstone_agent.slots.scheme import BootState
from tests.support import require_tool

ENV_SIZE = 0x4000


def make_uboot(tmp_path: Path, *, defaults: bool = True) -> UBootEnv:
    require_tool("fw_setenv")
    env = tmp_path / "uboot.env"
    env.write_bytes(b"\0" * ENV_SIZE)
    (tmp_path / "fw_env.config").write_text(f"{env} 0x0 {ENV_SIZE:#x}\n")
    board = tmp_path / "board.env"
    board.write_text("bootcmd=run redstone_boot\n")
    return UBootEnv(
        UBootConfig(fw_env_config=tmp_path / "fw_env.config", defaults=board if defaults else None)
    )


def make_grub(tmp_path: Path) -> GrubEnv:
    require_tool("grub-editenv")
    return GrubEnv(GrubConfig(envfile=tmp_path / "grubenv"))


@pytest.fixture(params=["uboot", "grub"])
def bootenv(request: pytest.FixtureRequest, tmp_path: Path) -> BootEnv:
    return make_uboot(tmp_path) if request.param == "uboot" else make_grub(tmp_path)


def test_blank_env_is_reported_then_initialised(bootenv: BootEnv) -> None:
    with pytest.raises(BootEnvCorrupt, match=r"cannot be read|file not found"):
        bootenv.load_state()
    bootenv.initialise(BootState.factory("B").to_env())
    assert bootenv.load_state() == BootState.factory("B")


def test_state_round_trips_through_the_real_tool(bootenv: BootEnv) -> None:
    bootenv.initialise(BootState.factory("A").to_env())
    state = BootState.factory("A").mark_bad("B").try_slot("B", 3)
    bootenv.save_state(state)
    assert bootenv.load_state() == state
    assert bootenv.read()["redstone_order"] == "B A"


def test_values_with_spaces_survive(bootenv: BootEnv) -> None:
    bootenv.initialise({"redstone_order": "A B", "note": "two words"})
    assert bootenv.read()["note"] == "two words"


def test_env_without_the_scheme_says_how_to_fix_it(bootenv: BootEnv) -> None:
    bootenv.initialise({"unrelated": "1"})
    with pytest.raises(BootEnvCorrupt, match="redstone-sub init-bootenv"):
        bootenv.load_state()


def test_uboot_keeps_board_defaults_when_initialising(tmp_path: Path) -> None:
    env = make_uboot(tmp_path)
    env.initialise(BootState.factory("A").to_env())
    assert env.read()["bootcmd"] == "run redstone_boot"


def test_uboot_bad_crc_is_corrupt(tmp_path: Path) -> None:
    env = make_uboot(tmp_path)
    env.initialise(BootState.factory("A").to_env())
    raw = bytearray((tmp_path / "uboot.env").read_bytes())
    raw[10] ^= 0xFF
    (tmp_path / "uboot.env").write_bytes(bytes(raw))
    with pytest.raises(BootEnvCorrupt, match=r"U-Boot env .* cannot be read"):
        env.load_state()


def test_uboot_refuses_to_initialise_a_corrupt_env_without_board_defaults(tmp_path: Path) -> None:
    env = make_uboot(tmp_path, defaults=False)
    with pytest.raises(BootEnvCorrupt, match="no board defaults file is configured"):
        env.initialise(BootState.factory("A").to_env())


def test_grub_invalid_block_is_corrupt(tmp_path: Path) -> None:
    env = make_grub(tmp_path)
    (tmp_path / "grubenv").write_text("garbage\n")
    with pytest.raises(BootEnvCorrupt, match="invalid environment block"):
        env.load_state()


def test_missing_tool_names_the_package(tmp_path: Path) -> None:
    env = make_uboot(tmp_path)
    env.config = UBootConfig(
        fw_env_config=env.config.fw_env_config, fw_printenv="/nonexistent/fw_printenv"
    )
    with pytest.raises(BootloaderError, match="fw_printenv not found: install libubootenv-tool"):
        env.read()
    grub = GrubEnv(GrubConfig(envfile=tmp_path / "g", grub_editenv="/nonexistent/grub-editenv"))
    (tmp_path / "g").write_text("x")
    with pytest.raises(BootloaderError, match="install grub-common"):
        grub.read()


def test_missing_fw_env_config(tmp_path: Path) -> None:
    env = UBootEnv(UBootConfig(fw_env_config=tmp_path / "absent.config"))
    with pytest.raises(BootloaderError, match="configuration file not found"):
        env.read()


def test_newline_in_a_value_is_refused(bootenv: BootEnv) -> None:
    bootenv.initialise({"redstone_order": "A B"})
    with pytest.raises(BootloaderError, match="invalid assignment"):
        bootenv.write({"x": "a\nbootcmd=evil"})
