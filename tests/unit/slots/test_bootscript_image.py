"""The mkimage header checks: what mkimage makes passes, every torn or foreign image fails."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from redstone_agent.config import ConfigError
from redstone_agent.slots.bootscript import first_stage_choice
from redstone_agent.slots.bootscript_config import BootScriptConfig, CopyConfig
from redstone_agent.slots.bootscript_errors import BadBootScript
from redstone_agent.slots.bootscript_image import HEADER, HEADER_SIZE, check_script, header_length


def legacy_image(script: bytes, *, kind: int = 6, comp: int = 0) -> bytes:
    """A legacy image built the way mkimage builds one (so the tests need no tool)."""
    data = struct.pack(">II", len(script), 0) + script
    fields = [0x27051956, 0, 0, len(data), 0, 0, zlib.crc32(data), 5, 2, kind, comp, b"t"]
    header = bytearray(HEADER.pack(*fields))
    struct.pack_into(">I", header, 4, zlib.crc32(header))
    return bytes(header) + data


GOOD = legacy_image(b"echo hello\n")


def test_a_good_script_passes_and_its_length_comes_from_the_header() -> None:
    image = check_script(GOOD)
    assert image.length == len(GOOD) and image.name == "t"
    assert header_length(GOOD[:HEADER_SIZE]) == len(GOOD)


@pytest.mark.parametrize("cut", [0, 1, 20, 63, 64, 70, len(GOOD) - 1])
def test_every_truncation_is_refused(cut: int) -> None:
    with pytest.raises(BadBootScript):
        check_script(GOOD[:cut])


@pytest.mark.parametrize("offset", range(0, len(GOOD), 7))
def test_a_flipped_byte_anywhere_is_refused(offset: int) -> None:
    torn = bytearray(GOOD)
    torn[offset] ^= 0x40
    with pytest.raises(BadBootScript, match=r"magic|CRC|type|compressed|bytes"):
        check_script(bytes(torn))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"\0" * 200, "magic"),
        (legacy_image(b"x", kind=2), "not a script"),
        (legacy_image(b"x", comp=1), "compressed"),
        (legacy_image(b""), "empty"),
        (GOOD + b"\0", "header says"),
    ],
)
def test_foreign_images_are_refused_with_the_reason(image: bytes, message: str) -> None:
    with pytest.raises(BadBootScript, match=message):
        check_script(image)


def test_header_length_rejects_a_header_with_a_bad_crc() -> None:
    torn = bytearray(GOOD)
    torn[12] ^= 1  # the data size
    assert header_length(bytes(torn)) is None


@pytest.mark.parametrize(
    ("selected", "valid", "boots"),
    [
        ("A", {"A": True, "B": True}, "A"),
        ("B", {"A": True, "B": True}, "B"),
        ("B", {"A": True, "B": False}, "A"),
        ("A", {"A": False, "B": True}, "B"),
        ("A", {"A": False, "B": False}, ""),
    ],
)
def test_first_stage_choice(selected: str, valid: dict[str, bool], boots: str) -> None:
    assert first_stage_choice(selected, valid) == boots


def test_config_from_table(tmp_path: Path) -> None:
    config = BootScriptConfig.from_table(
        {
            "A": {"device": "a.bin"},
            "B": {"device": "/dev/mmcblk0p6", "offset": 512, "size": 4096},
            "fw-env-config": "fw_env.config",
            "require-redundant-env": False,
        },
        where="master.toml: master.ecus[2].bootscript",
        base=tmp_path,
    )
    assert config.copies["A"] == CopyConfig(tmp_path / "a.bin")
    assert config.copies["B"] == CopyConfig(Path("/dev/mmcblk0p6"), 512, 4096)
    assert config.uboot.fw_env_config == tmp_path / "fw_env.config"
    assert config.variable == "redstone_script" and not config.require_redundant_env
    assert config.journal == Path("/var/lib/redstone/bootscript-redstone_script.json")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "bootscript: A: no copies"),
        ({"A": "/x", "C": "/y"}, "bootscript: C: unknown key"),
        ({"A": {"path": "/x"}}, r"bootscript\.A: path: unknown key"),
        ({"A": {"offset": 1}}, r"bootscript\.A: device: missing"),
        ({"A": {"device": "/x", "size": -1}}, r"bootscript\.A: size: .*positive"),
        ({"A": "/x", "variable": "a b"}, "variable: .*not a U-Boot env variable"),
        ({"A": "/x", "require-redundant-env": "no"}, "require-redundant-env: expected bool"),
        ({"A": {"device": "/x", "offset": True}}, "offset: expected int"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        BootScriptConfig.from_table(table, where="m.toml: bootscript")
    assert "\n" not in str(caught.value)
