"""The virtual vehicle's pure parts: every generated file loads with the product's own loaders."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.config import load
from redstone_agent.ecusim.config import load_sim
from redstone_agent.master.topology import EcuKind, load_master_config
from redstone_agent.sub.config import SubConfig
from redstone_agent.uds.config import load_ecu
from redstone_agent.vvehicle.imagerepo import publication_order
from redstone_agent.vvehicle.images import UDS_IMAGE_SIZE, header, image, version_of
from redstone_agent.vvehicle.plan import (
    ADAS,
    BCM,
    GATEWAY,
    VERSIONS,
    EcuPlan,
    MasterFiles,
    SubFiles,
    VehiclePlan,
    master_toml,
    sim_toml,
    sub_toml,
    uds_ecu_toml,
)
from redstone_agent.vvehicle.report import merge, table


def _master_files(tmp_path: Path, plan: VehiclePlan) -> MasterFiles:
    uds = {}
    for ecu in plan.of_kind(EcuKind.UDS_DOCAN, EcuKind.UDS_DOIP):
        uds[ecu.role] = tmp_path / f"{ecu.role}.toml"
        uds[ecu.role].write_text(uds_ecu_toml(ecu, address="10.77.0.9"))
    p = tmp_path
    return MasterFiles(
        p / "state", p / "cache", p / "ecu.pem", p / "c.pem", p / "c.key", p / "ca.pem",
        p / "d.json", p / "i.json", p / "someipyd.sock", uds,
        {role: p / f"{role}.pem" for role in uds},
    )  # fmt: skip


@pytest.mark.parametrize("with_docan", [True, False], ids=["root", "unprivileged"])
def test_master_toml_is_a_valid_topology(tmp_path: Path, with_docan: bool) -> None:
    plan = VehiclePlan.default(with_docan=with_docan)
    path = tmp_path / "master.toml"
    path.write_text(
        master_toml(plan, _master_files(tmp_path, plan), address="10.77.0.1", cloud_url="https://c")
    )
    config = load_master_config(path)
    assert config.vin == plan.vin and config.consent == "auto"
    assert config.primary.serial == plan.ecu("tbox").serial
    assert {e.serial: e.kind for e in config.ecus} == {e.serial: e.kind for e in plan.ecus}
    gateway = config.ecu(GATEWAY.serial)
    assert gateway is not None and gateway.installed_target == "gateway-1.0.0"
    assert gateway.ecu_key == tmp_path / "gateway.pem"
    assert (config.ecu(BCM.serial) is not None) is with_docan
    subs = {e.instance_id for e in config.by_kind(EcuKind.SUB)}
    assert subs == {1, 2}


def test_uds_files_agree_on_both_ends(tmp_path: Path) -> None:
    for ecu in (BCM, GATEWAY):
        (tmp_path / "t.toml").write_text(uds_ecu_toml(ecu, address="10.77.0.5"))
        (tmp_path / "s.toml").write_text(
            sim_toml(ecu, address="10.77.0.5", version="2.0.0", faults={"wrong_checksum": True})
        )
        tester, sim = load_ecu(tmp_path / "t.toml"), load_sim(tmp_path / "s.toml")
        assert tester.transport == ecu.transport
        assert tester.programming.dual_bank and sim.memory.dual_bank
        assert sim.memory.initial_version == "2.0.0" and sim.faults.wrong_checksum
        assert tester.security.params == sim.security.params
        assert [r.size for r in tester.regions] == [r.size for r in sim.memory.regions]
        if ecu is BCM:
            assert sim.docan is not None
            assert tester.docan.interface == sim.docan.interface == "udp_multicast"
            assert 8 <= tester.docan.block_size <= 32
            assert (tester.docan.tx_id, tester.docan.rx_id) == (sim.docan.tx_id, sim.docan.rx_id)
        else:
            assert sim.doip is not None and tester.doip.host == sim.doip.host


def test_sub_toml_loads(tmp_path: Path) -> None:
    files = SubFiles(
        tmp_path / "state", tmp_path / "d.json", tmp_path / "i.json", tmp_path / "ecu.pem",
        tmp_path / "sock", tmp_path / "reboot", slots_toml="",
    )  # fmt: skip
    (tmp_path / "sub.toml").write_text(sub_toml(ADAS, files, address="10.77.0.3"))
    config = load(tmp_path / "sub.toml", SubConfig, section="sub")
    assert config.ecu_serial == ADAS.serial and config.someip.instance_id == 1
    assert config.reboot_command == ["touch", str(tmp_path / "reboot")]


@pytest.mark.parametrize("ecu", [ADAS, GATEWAY], ids=lambda e: e.role)
def test_images_carry_their_version_and_change_little(ecu: EcuPlan) -> None:
    old, new = image(ecu, VERSIONS[0]), image(ecu, VERSIONS[1])
    assert version_of(old) == "1.0.0" and version_of(new) == "2.0.0"
    assert image(ecu, VERSIONS[1]) == new, "images must be reproducible"
    changed = sum(a != b for a, b in zip(old, new, strict=True))
    assert 0 < changed < len(old) // 10
    if ecu is GATEWAY:
        assert len(new) == UDS_IMAGE_SIZE
    with pytest.raises(ValueError, match="longer"):
        header("1" * 17)


def test_publication_order_puts_roots_first_and_timestamp_last() -> None:
    names = ["timestamp.json", "2.targets.json", "10.root.json", "2.root.json", "root.json"]
    assert publication_order(names + ["1.root.json", "2.snapshot.json"]) == [
        "1.root.json",
        "2.root.json",
        "10.root.json",
        "2.snapshot.json",
        "2.targets.json",
        "timestamp.json",
    ]


def test_report_table_checks_the_real_versions() -> None:
    report = {
        "campaign": "campaign-2",
        "outcome": "rolled-back",
        "detail": "gateway: check routine failed",
        "ecus": [
            {"serial": ADAS.serial, "transport": "someip", "old": "adas-2.0.0",
             "new": "adas-3.0.0", "outcome": "rolled-back", "seconds": 4.2,
             "bytes_downloaded": 70_000, "bytes_saved": 980_000},
        ],
    }  # fmt: skip
    names = {ADAS.serial: "adas", GATEWAY.serial: "gateway"}
    result = merge(report, {ADAS.serial: "2.0.0", GATEWAY.serial: "2.0.0"}, names, "2.0.0")
    assert result.consistent and [r["name"] for r in result.rows] == ["adas", "gateway"]
    text = table(result)
    assert "adas-2.0.0 → adas-3.0.0" in text and "957 KiB" in text
    assert text.splitlines()[-1] == "every ECU runs 2.0.0"
    mixed = merge(report, {ADAS.serial: "3.0.0", GATEWAY.serial: "2.0.0"}, names, "2.0.0")
    assert not mixed.consistent and "NOT every ECU" in table(mixed)
