"""CloudConfig: a typo in master.toml fails at start-up, as one line naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from redstone_agent.cloud.config import CloudConfig
from redstone_agent.config.loader import ConfigError, from_dict

VIN = "RSTEST00000000001"


def test_defaults_and_base_url() -> None:
    config = CloudConfig("https://ota.example.com:8443/", VIN)
    assert config.base_url == "https://ota.example.com:8443"
    assert (config.cert, config.key, config.ca) == (None, None, None)
    assert (config.timeout, config.poll_interval_s) == (30.0, 300.0)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"url": "ota.example.com"}, "url: expected https://host[:port]"),
        ({"url": "https://ota.example.com/api"}, "url: expected https://host[:port]"),
        ({"url": "ftp://ota.example.com"}, "url: expected https://host[:port]"),
        ({"url": "https://ota example.com"}, "url: expected https://host[:port]"),
        ({"vin": "RSTEST0000000001"}, "vin: expected 17 characters"),
        ({"vin": "RSTEST0000000000I"}, "vin: expected 17 characters"),
        ({"vin": "rstest00000000001"}, "vin: expected 17 characters"),
        ({"vin": "RSTEST/0000000001"}, "vin: expected 17 characters"),
        ({"cert": Path("c.pem")}, "cert and key: give both"),
        ({"key": Path("k.pem")}, "cert and key: give both"),
        ({"timeout": 0}, "timeout: must be a positive number"),
        ({"poll_interval_s": float("inf")}, "poll_interval_s: must be a positive number"),
    ],
)
def test_bad_settings(overrides: dict[str, Any], problem: str) -> None:
    values: dict[str, Any] = {"url": "https://ota.example.com", "vin": VIN, **overrides}
    with pytest.raises(ValueError, match="^" + problem.replace("[", r"\[").replace("]", r"\]")):
        CloudConfig(**values)


def test_loads_from_toml_tables(tmp_path: Path) -> None:
    table = {"url": "https://ota.example.com", "vin": VIN, "cert": "c.pem", "key": "k.pem"}
    config = from_dict(table, CloudConfig, source="master.toml", base_dir=tmp_path)
    assert config.cert == tmp_path / "c.pem"
    with pytest.raises(ConfigError) as failed:
        from_dict({**table, "vin": "short"}, CloudConfig, source="master.toml", prefix="cloud")
    assert str(failed.value).startswith("master.toml: cloud: vin: expected 17 characters")
