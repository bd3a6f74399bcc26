"""ECU configuration files: the shipped examples load, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.config import ConfigError
from redstone_agent.ecusim.config import load_sim
from redstone_agent.uds.config import find_ecu, load_ecu
from redstone_agent.uds.errors import UnknownEcuError, nrc_name

EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "redstone" / "ecus"


def test_shipped_examples_load() -> None:
    bcm = load_ecu(EXAMPLES / "bcm.toml")
    assert (bcm.transport, bcm.docan.tx_id, bcm.region("app").size) == ("docan", 0x7E0, 0x40000)
    gateway = load_ecu(EXAMPLES / "gateway.toml")
    assert gateway.programming.dual_bank and gateway.security.algorithm == "aes-cmac"
    sim = load_sim(EXAMPLES / "sim-bcm.toml")
    assert sim.docan is not None and sim.docan.tx_id == bcm.docan.tx_id


def test_find_ecu_by_name_and_unknown_ecu(tmp_path: Path) -> None:
    assert find_ecu(EXAMPLES, "gateway").transport == "doip"
    with pytest.raises(UnknownEcuError, match=r"unknown ECU 'abs'.*known: bcm, gateway"):
        find_ecu(EXAMPLES, "abs")


def test_find_ecu_names_the_files_it_could_not_load(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text((EXAMPLES / "gateway.toml").read_text())
    (tmp_path / "bcm.toml").write_text('name = "bcm"\ntransport = "docan"\nregions = []\n')
    with pytest.raises(
        UnknownEcuError, match=r"'bcm'.*known: gateway; not ECU files .*: bcm.toml\)"
    ):
        find_ecu(tmp_path, "bcm")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\ntransport = "lin"\n[[regions]]\nname="a"\naddress=0\nsize=1\n', "transport"),
        ('name = "x"\ntransport = "docan"\nregions = []\n', "at least one"),
        (
            'name = "x"\ntransport = "docan"\n[docan]\nframe_length = 64\n'
            '[[regions]]\nname="a"\naddress=0\nsize=1\n',
            "frame_length",
        ),
        (
            'name = "x"\ntransport = "docan"\n[[regions]]\nname="a"\naddress="0"\nsize=1\n',
            "regions",
        ),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "ecu.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_ecu(path)


def test_nrc_names() -> None:
    assert nrc_name(0x35) == "0x35 invalidKey"
    assert nrc_name(0x99) == "0x99 unknown NRC"
