"""master.toml ``behind``: a UDS ECU its Sub flashes (docs/someip.md §11). Each mistake is
one line naming the file and the key; a good one needs no uds-config on the Master."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.config import ConfigError
from redstone_agent.master.topology import EcuKind, load_master_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "etc" / "redstone" / "master.toml"
PROXIED_INDEX = 5
"""The appended ECU's index in master.ecus (after the example's five)."""


def _with(tmp_path: Path, table: str) -> Path:
    text = EXAMPLE.read_text().replace('"ecus/', f'"{EXAMPLE.parent}/ecus/')
    path = tmp_path / "master.toml"
    path.write_text(text + "\n[[master.ecus]]\n" + table)
    return path


GOOD = """serial = "ECU-SEAT-0001"
kind = "uds-docan"
hardware-id = "seat-hw"
installed-target = "seat-1.0"
behind = "ECU-BODY-0001"
"""


def test_an_ecu_behind_a_sub_needs_no_uds_config(tmp_path: Path) -> None:
    config = load_master_config(_with(tmp_path, GOOD))
    seat = config.ecu("ECU-SEAT-0001")
    assert seat is not None
    assert (seat.kind, seat.behind, seat.uds_config) == (EcuKind.UDS_DOCAN, "ECU-BODY-0001", None)
    assert seat.bus_name == "ECU-BODY-0001:uds"  # the Sub's bus, not the Master's can0


def test_a_named_bus_behind_a_sub_is_the_subs(tmp_path: Path) -> None:
    config = load_master_config(_with(tmp_path, GOOD + 'bus = "can0"\n'))
    seat = config.ecu("ECU-SEAT-0001")
    bcm = config.ecu("ECU-BCM-0001")
    assert seat is not None and bcm is not None
    assert (seat.bus_name, bcm.bus_name) == ("ECU-BODY-0001:can0", "can0")


def test_group_and_depends_on_rules_still_apply(tmp_path: Path) -> None:
    path = _with(tmp_path, GOOD + 'depends-on = ["NOPE"]\n')
    with pytest.raises(ConfigError, match=rf"master.ecus\[{PROXIED_INDEX}\].depends-on\[0\]"):
        load_master_config(path)


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (
            ('behind = "ECU-BODY-0001"', 'behind = "ECU-NOPE-0001"'),
            f"master.ecus[{PROXIED_INDEX}].behind",
            "no ECU has serial 'ECU-NOPE-0001'",
        ),
        (
            ('behind = "ECU-BODY-0001"', 'behind = "ECU-BCM-0001"'),
            f"master.ecus[{PROXIED_INDEX}].behind",
            "ECU-BCM-0001 is of kind 'uds-docan', not 'sub'",
        ),
        (
            ('behind = "ECU-BODY-0001"', 'behind = "TBOX-0001"'),
            f"master.ecus[{PROXIED_INDEX}].behind",
            "TBOX-0001 is of kind 'self', not 'sub'",
        ),
        (
            ('behind = "ECU-BODY-0001"', 'behind = "ECU-SEAT-0001"'),
            f"master.ecus[{PROXIED_INDEX}].behind",
            "ECU-SEAT-0001 cannot be behind itself",
        ),
        (
            ('kind = "uds-docan"', 'kind = "sub"\ninstance-id = 7'),
            f"master.ecus[{PROXIED_INDEX}]",
            "behind is only for uds-docan/uds-doip ECUs",
        ),
        (
            ('behind = "ECU-BODY-0001"', f'behind = "ECU-BODY-0001"\nuds-config = "{EXAMPLE}"'),
            f"master.ecus[{PROXIED_INDEX}]",
            "uds-config is not used behind a Sub",
        ),
        (
            ('behind = "ECU-BODY-0001"', f'behind = "ECU-BODY-0001"\necu-key = "{EXAMPLE}"'),
            f"master.ecus[{PROXIED_INDEX}]",
            "ecu-key is not used behind a Sub",
        ),
        (
            ('behind = "ECU-BODY-0001"\n', ""),
            f"master.ecus[{PROXIED_INDEX}]",
            "needs uds-config (or behind)",
        ),
    ],
)
def test_a_bad_behind_is_one_line_naming_file_and_key(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    path = _with(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as caught:
        load_master_config(path)
    message = str(caught.value)
    assert str(path) in message and key in message and problem in message, message
    assert "\n" not in message
