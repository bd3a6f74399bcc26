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
        (
            "poll-interval-s = 300",
            'poll-interval-s = 300\ntunnel-cert = "/var/lib/redstone/master/tls.pem"',
            "master.cloud",
            "tunnel-cert and tunnel-key: give both",
        ),
        (
            "poll-interval-s = 300",
            'poll-interval-s = 300\ntunnel-cert = "/x.pem"\ntunnel-key = "pkcs11:token=t;object=k"',
            "master.cloud",
            "drop cert and key",
        ),
        (
            "poll-interval-s = 300",
            "poll-interval-s = 300\nrenew-before-days = 0",
            "master.cloud",
            "renew-before-days",
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


def test_master_self_reads_like_a_subs_slots(tmp_path: Path) -> None:
    config = load_master_config(EXAMPLE)
    own = config.self
    assert own is not None
    assert own.slots.device("B") == Path("/dev/mmcblk0p3") and own.slots.tries == 3
    assert own.health.units == ["redstone-someipyd.service"] and own.health.ecus
    assert own.reboot_command == ["/bin/sh", "-c", "kill -s RTMIN+5 1"]
    bare = _variant(tmp_path, "[master.self]\n", "[master.ignored]\n")
    with pytest.raises(ConfigError, match=r"master.ignored: unknown key"):
        load_master_config(bare)


BOOTLOADER = """
[[master.ecus]]
serial = "TBOX-0001-BOOT"
kind = "bootloader"
hardware-id = "tbox-bootscript"
bootscript = { A = { device = "script-a.bin" }, B = { device = "script-b.bin" }%s }
"""


@pytest.mark.parametrize(
    ("extra", "cut", "key", "problem"),
    [
        ("", "", None, None),
        (', fw-env-config = "/etc/other.config"', "", "bootscript.fw-env-config", "own env"),
        ("", "[master.self.health]", "ecus[5].kind", "needs [master.self]"),
        (', colour = "red"', "", "bootscript", "colour"),
    ],
)
def test_bootloader_ecu_needs_the_tboxs_own_uboot_env(
    tmp_path: Path, extra: str, cut: str, key: str | None, problem: str | None
) -> None:
    text = EXAMPLE.read_text().replace('"ecus/', f'"{EXAMPLE.parent}/ecus/')
    if cut:  # drop [master.self] and its sub-tables
        start = text.index("[master.self]")
        text = text[:start] + text[text.index("# The vehicle: one table per ECU.") :]
    path = tmp_path / "master.toml"
    path.write_text(text + BOOTLOADER % extra)
    if key is None:
        spec = load_master_config(path).ecu("TBOX-0001-BOOT")
        assert spec is not None and spec.kind is EcuKind.BOOTLOADER
        assert spec.order > (0, 99)  # after every other kind, whatever its group
        return
    with pytest.raises(ConfigError) as caught:
        load_master_config(path)
    message = str(caught.value)
    assert "\n" not in message and key in message and problem in message, message
