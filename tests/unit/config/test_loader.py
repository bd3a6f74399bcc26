"""The config loader: typed values in, one clear error naming file and key out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from redstone_agent.config import ConfigError, from_dict, load


class Backend(enum.Enum):
    UBOOT = "uboot"
    GRUB = "grub"


@dataclass(frozen=True)
class Slot:
    device: Path
    bootname: str


@dataclass(frozen=True)
class Node:
    name: str
    slots: dict[str, Slot]
    backend: Backend = Backend.UBOOT
    tries: int = 3
    timeout: float = 1.5
    readback: bool = False
    mode: Literal["full", "partial"] = "full"
    units: list[str] = field(default_factory=list)
    note: str | None = None

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError("tries: must be at least 1")


GOOD = {
    "name": "adcu",
    "backend": "grub",
    "tries": 2,
    "timeout": 3,
    "units": ["a.service"],
    "slots": {
        "A": {"device": "a.img", "bootname": "A"},
        "B": {"device": "/dev/b", "bootname": "B"},
    },
}


def test_converts_nested_values_and_defaults(tmp_path: Path) -> None:
    node = from_dict(GOOD, Node, base_dir=tmp_path)
    assert node.backend is Backend.GRUB
    assert node.timeout == 3.0 and isinstance(node.timeout, float)
    assert node.slots["A"].device == tmp_path / "a.img"
    assert node.slots["B"].device == Path("/dev/b")
    assert node.readback is False and node.mode == "full" and node.note is None


def test_load_reads_toml_and_resolves_paths_next_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('name = "x"\nreadback = true\n[slots.A]\ndevice = "a.img"\nbootname = "A"\n')
    node = load(path, Node)
    assert node.readback is True
    assert node.slots["A"].device == tmp_path / "a.img"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tries": "3"}, "sub.toml: tries: expected an integer, got a string"),
        ({"tries": True}, "sub.toml: tries: expected an integer, got a boolean"),
        ({"tries": 0}, "sub.toml: (top level): tries: must be at least 1"),
        ({"backend": "lilo"}, "sub.toml: backend: expected one of 'uboot', 'grub', got 'lilo'"),
        ({"mode": "half"}, "sub.toml: mode: expected one of 'full', 'partial', got 'half'"),
        ({"units": "a.service"}, "sub.toml: units: expected an array, got a string"),
        ({"units": [1]}, "sub.toml: units[0]: expected a string, got int 1"),
        ({"colour": "red"}, "sub.toml: colour: unknown key (expected one of:"),
        (
            {"slots": {"A": {"device": "x"}}},
            "sub.toml: slots.A.bootname: missing (expected a string)",
        ),
        (
            {"slots": {"A": {"device": 5, "bootname": "A"}}},
            "sub.toml: slots.A.device: expected a path",
        ),
        ({"note": 5}, "sub.toml: note: expected a string, got int 5"),
    ],
)
def test_errors_name_file_key_and_expectation(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict({**GOOD, **change}, Node, source="sub.toml")
    assert str(info.value).startswith(message)


def test_missing_required_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"x.toml: name: missing \(expected a string\)"):
        from_dict({"slots": {}}, Node, source="x.toml")


def test_file_problems_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load(tmp_path / "nope.toml", Node)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML") as info:
        load(bad, Node)
    assert "\n" not in str(info.value)


def test_section_is_loaded_alone_and_errors_keep_the_full_key(tmp_path: Path) -> None:
    path = tmp_path / "sub.toml"
    path.write_text('[other]\nanything = 1\n[node]\nname = "x"\ntries = "many"\n[node.slots]\n')
    with pytest.raises(ConfigError, match=r"sub\.toml: node\.tries: expected an integer"):
        load(path, Node, section="node")
    with pytest.raises(ConfigError, match=r"sub\.toml: absent: missing \(expected a table\)"):
        load(path, Node, section="absent")
