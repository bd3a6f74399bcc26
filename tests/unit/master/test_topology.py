"""master.toml: the shipped example loads; every bad topology is one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.config import ConfigError
from redstone_agent.master.topology import EcuKind, load_master_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "etc" / "redstone" / "master.toml"


def test_shipped_example_loads() -> None:
    config = load_master_config(EXAMPLE)
    assert config.primary.serial == "TBOX-0001"
    kinds = {e.serial: e.kind for e in config.ecus}
    assert kinds["ECU-BCM-0001"] is EcuKind.UDS_DOCAN
    assert config.ecu("ECU-GW-0001") is not None
    assert config.ecu("ECU-GW-0001").depends_on == ["ECU-BCM-0001"]  # type: ignore[union-attr]


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text
    path = tmp_path / "master.toml"
    path.write_text(text.replace(old, new, 1).replace('"ecus/', f'"{EXAMPLE.parent}/ecus/'))
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('kind = "sub"', 'kind = "can-fd"', "master.ecus[1].kind", "expected one of"),
        ("instance-id = 1", "instance-id = 2", "master.ecus[2].instance-id", "already used"),
        (
            'serial = "ECU-BODY-0001"',
            'serial = "ECU-ADAS-0001"',
            "master.ecus[2].serial",
            "repeats",
        ),
        ('depends-on = ["ECU-BCM-0001"]', 'depends-on = ["NOPE"]', "depends-on[0]", "no ECU"),
        (
            'uds-config = "ecus/gateway.toml"',
            'uds-config = "ecus/bcm.toml"',
            "uds-config",
            "transport",
        ),
        ('kind = "self"', 'kind = "sub"\ninstance-id = 9', "master.ecus", "exactly one"),
        (
            "group = 1                                    # after the Subs",
            "group = 2",
            "depends-on[0]",
            "later group",
        ),
    ],
)
def test_bad_topology_is_one_line_naming_file_and_key(
    tmp_path: Path, old: str, new: str, key: str, problem: str
) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as caught:
        load_master_config(path)
    message = str(caught.value)
    assert str(path) in message and key in message and problem in message, message
    assert "\n" not in message


def test_can_id_clash_on_one_bus(tmp_path: Path) -> None:
    path = _variant(tmp_path, 'kind = "uds-doip"', 'kind = "uds-docan"')
    text = path.read_text().replace(
        f"{EXAMPLE.parent}/ecus/gateway.toml", f"{EXAMPLE.parent}/ecus/bcm.toml"
    )
    path.write_text(text.replace('bus = "eth0"\ngroup = 1', 'bus = "can0"\ngroup = 1'))
    with pytest.raises(ConfigError, match="can-id 0x7e0 on bus can0 is also used by ECU-BCM-0001"):
        load_master_config(path)
