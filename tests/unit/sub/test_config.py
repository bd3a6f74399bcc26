"""The [sub] example in docs/someip.md is a config the daemon accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from redstone_agent.config import ConfigError, load
from redstone_agent.sub.config import SubConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "someip.md"


def documented_example() -> str:
    text = DOC.read_text()
    section = text[text.index("## 9.") :]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_documented_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "sub.toml"
    path.write_text(documented_example())
    config = load(path, SubConfig, section="sub")
    assert config.someip.instance_id == 1
    assert config.trust.verification == "full"
    assert config.health.units == ["body-app.service"]


def test_a_missing_required_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "sub.toml"
    path.write_text(documented_example().replace('ecu-serial = "ECU-BODY-0001"', ""))
    with pytest.raises(ConfigError, match=r"ecu-serial|ecu_serial"):
        load(path, SubConfig, section="sub")
