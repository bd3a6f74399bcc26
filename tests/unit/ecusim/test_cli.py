"""redstone-ecusim: help that teaches, one-line errors, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.cli.ecusim import apply_overrides, build_parser, main
from redstone_agent.ecusim.config import load_sim

EXAMPLES = Path(__file__).resolve().parents[3] / "etc" / "redstone" / "ecus"


def test_help_explains_modes_and_faults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for phrase in ("bootloader", "SecurityAccess", "NRC 0x78", "--fault", "docs/uds.md"):
        assert phrase in out


def test_missing_config_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nope.toml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("redstone-ecusim: error:") and "file not found" in err[-1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\n', "at least one of [docan] and [doip]"),
        (
            'name = "x"\ncompression = ["none", "zlb"]\n[doip]\n',
            "compression[1]: expected one of 'none', 'zlib'",
        ),
    ],
)
def test_bad_simulator_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(text)
    assert main([str(path)]) == 1
    assert message in capsys.readouterr().err


def test_overrides_replace_ports_channel_and_faults() -> None:
    args = build_parser().parse_args(
        [
            str(EXAMPLES / "sim-gateway.toml"),
            "--tcp-port",
            "0",
            "--fault",
            "pending_storm=5",
            "--fault",
            "wrong_checksum",
        ]
    )
    config = apply_overrides(load_sim(args.config), args)
    assert config.doip is not None and config.doip.tcp_port == 0
    assert config.faults.pending_storm == 5 and config.faults.wrong_checksum is True


def test_fault_values_read_like_the_toml_file() -> None:
    args = build_parser().parse_args(
        [str(EXAMPLES / "sim-gateway.toml"), "--fault", "drop_services=[0x36, 0x37]"]
    )
    config = apply_overrides(load_sim(args.config), args)
    assert config.faults.drop_services == [0x36, 0x37]


def test_unparsable_fault_value_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(EXAMPLES / "sim-gateway.toml"), "--fault", "drop_every=abc"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("redstone-ecusim: error: --fault: drop_every:")
    assert "'abc' is not a TOML value" in err[-1]


def test_unknown_fault_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(EXAMPLES / "sim-gateway.toml"), "--fault", "meteor=1"]) == 1
    assert "meteor" in capsys.readouterr().err


def test_unopenable_can_bus_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sim.toml"
    path.write_text('name = "x"\n[docan]\ninterface = "nosuchbus"\nchannel = "c"\n')
    assert main([str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("redstone-ecusim: error: cannot open CAN bus nosuchbus:c")
