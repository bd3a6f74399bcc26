"""``[[sub.uds-ecus]]``: the UDS ECUs a Sub flashes for the Master; mistakes are one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from redstone_agent.config import ConfigError, load
from redstone_agent.sub.config import SubConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "someip.md"


def _section_9() -> str:
    text = DOC.read_text()
    match = re.search(r"```toml\n(.*?)```", text[text.index("## 9.") :], re.S)
    assert match is not None
    return match.group(1)


def _section_11() -> str:
    text = DOC.read_text()
    match = re.search(r"```toml\n(.*?)```", text[text.index("## 11.") :], re.S)
    assert match is not None
    return match.group(1)


def _load(tmp_path: Path, extra: str) -> SubConfig:
    path = tmp_path / "sub.toml"
    path.write_text(_section_9() + extra)
    return load(path, SubConfig, section="sub")


def test_the_documented_entry_loads(tmp_path: Path) -> None:
    config = _load(tmp_path, _section_11())
    (ecu,) = config.uds_ecus
    assert (ecu.serial, ecu.hardware_id, ecu.installed_target) == (
        "ECU-BCM-0001",
        "bcm-v1",
        "bcm-1.0.0.bin",
    )
    assert ecu.uds_config == Path("/etc/redstone/ecus/bcm.toml")


def test_without_entries_a_sub_flashes_nothing(tmp_path: Path) -> None:
    assert _load(tmp_path, "").uds_ecus == []


def test_a_relative_uds_config_is_relative_to_the_file(tmp_path: Path) -> None:
    entry = '[[sub.uds-ecus]]\nserial = "S"\nhardware-id = "h"\nuds-config = "ecus/s.toml"\n'
    assert _load(tmp_path, entry).uds_ecus[0].uds_config == tmp_path / "ecus" / "s.toml"


ENTRY = '[[sub.uds-ecus]]\nserial = "{}"\nhardware-id = "h"\nuds-config = "/x.toml"\n'


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (ENTRY.format("A") + ENTRY.format("A"), "uds-ecus[1].serial 'A' repeats uds-ecus[0]"),
        (ENTRY.format("ECU-BODY-0001"), "is this Sub's own ecu-serial"),
        (ENTRY.format(""), "serial must not be empty"),
        ('[[sub.uds-ecus]]\nserial = "A"\nhardware-id = "h"\n', "sub.uds_ecus[0].uds_config"),
        (ENTRY.format("A").replace("hardware-id", "hw"), "unknown key"),
    ],
)
def test_a_bad_entry_is_one_line(tmp_path: Path, extra: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, extra)
    message = str(caught.value)
    assert problem in message and "\n" not in message, message
