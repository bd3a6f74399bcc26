"""``redstone-cansim``: help, progress lines and one-line errors (run in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redstone_agent.cli.cansim import main

ROOT = Path(__file__).resolve().parents[3]
DBC = ROOT / "etc" / "redstone" / "vehicle.dbc"
VIRTUAL = ["--dbc", str(DBC), "--interface", "virtual", "--channel", "cansim-cli"]

SHORT = """\
[[step]]
duration-s = 0.05
signals = { speed_kph = 0, gear = "P" }
[[step]]
duration-s = 0.05
signals = { speed_kph = 20 }
malformed = ["gear"]
"""


def test_help_names_the_builtins_and_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "park-drive-park, driving-then-parked" in out
    assert "examples:" in out and "--scenario etc/redstone/scenarios/" in out
    for option in ("--interface", "--channel", "--dbc", "--scenario", "--loop", "--json"):
        assert option in out


def test_json_prints_one_object_per_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT)
    assert main([*VIRTUAL, "--scenario", str(scenario), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["event"], x["step"], x["steps"]) for x in lines] == [("step", 1, 2), ("step", 2, 2)]
    assert lines[0]["scenario"] == "short"
    assert lines[1]["signals"] == {"speed_kph": 20, "gear": "P"}
    assert lines[1]["malformed"] == ["gear"]


def test_default_dbc_is_the_installed_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDSTONE_VEHICLE_DBC", raising=False)
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT)
    assert main(["--interface", "virtual", "--channel", "x", "--scenario", str(scenario)]) == 0
    assert capsys.readouterr().out.count("\n") == 2


def test_text_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT)
    assert main([*VIRTUAL, "--scenario", str(scenario)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "redstone-cansim: short step 1/2 (0.05 s): gear=P speed_kph=0",
        "redstone-cansim: short step 2/2 (0.05 s): gear=P speed_kph=20 malformed=gear",
    ]


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        (
            "[[step]]\nduration-s = 1\nsignals = { speedkph = 0 }\n",
            "step[1].signals.speedkph: {dbc} has no signal speedkph "
            "(it has: battery_v, gear, ignition, parking_brake, soc_pct, speed_kph)",
        ),
        (
            "[[step]]\nduration-s = 1\nsignals = { soc_pct = 101 }\n",
            "step[1].signals.soc_pct: 101 is outside soc_pct's range 0..100 % in {dbc}",
        ),
    ],
)
def test_bad_scenario_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str, error: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(scenario)
    assert main([*VIRTUAL, "--scenario", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"redstone-cansim: error: {path}: {error.format(dbc=DBC)}\n"


def test_missing_dbc_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "vehicle.dbc"
    assert main(["--dbc", str(missing), "--interface", "virtual"]) == 1
    assert capsys.readouterr().err == f"redstone-cansim: error: {missing}: DBC file not found\n"


def test_unknown_scenario_name_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*VIRTUAL, "--scenario", "park-park"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("redstone-cansim: error: park-park: no such scenario file")
    assert "park-drive-park" in err and err.count("\n") == 1


def test_bus_that_cannot_open_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dbc", str(DBC), "--interface", "nonesuch", "--channel", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("redstone-cansim: error: cannot open CAN bus nonesuch:x: ")
    assert err.count("\n") == 1
