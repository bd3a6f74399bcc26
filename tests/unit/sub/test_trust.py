"""The Sub keeps a rotated root it verified, so later bundles chain from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.sub.config import TrustConfig
from redstone_agent.sub.errors import VerificationFailed
from redstone_agent.sub.trust import SubTrust
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.simulator import UptaneSimulator

SERIAL, HW = "ECU-1", "hw-1"


def _provision(tmp_path: Path, sim: UptaneSimulator) -> SubTrust:
    roots = sim.trusted_roots()
    (tmp_path / "director.json").write_bytes(roots.director)
    assert roots.image is not None
    (tmp_path / "image.json").write_bytes(roots.image)
    state = tmp_path / "state"
    state.mkdir()
    config = TrustConfig(tmp_path / "director.json", tmp_path / "image.json")
    return SubTrust(config, SERIAL, HW, state)


def test_a_rotated_director_root_is_stored_whole_and_used_next_time(tmp_path: Path) -> None:
    sim = UptaneSimulator.create()
    trust = _provision(tmp_path, sim)
    sim.add_image("ecu.img", b"image", [HW], 1)
    sim.assign(SERIAL, HW, "ecu.img")
    old_key = sim.director.root.roles["targets"].keyids[0]
    sim.director.rotate_key("targets", old_key, generate_signer())
    sim.commit_director()

    assignment = trust.verify(sim.bundle().to_bytes(), 0)

    assert assignment.filename == "ecu.img"
    state = tmp_path / "state"
    assert (state / "director.root.json").read_bytes() == sim.director.roots[-1]
    assert sorted(p.name for p in state.iterdir()) == ["director.root.json"]
    # From now on the stored root is the trust anchor, not the provisioned one.
    (tmp_path / "director.json").write_bytes(b"not a root")
    assert trust.verify(sim.bundle().to_bytes(), 0).filename == "ecu.img"


def test_an_unreadable_trusted_root_is_a_verification_failure(tmp_path: Path) -> None:
    sim = UptaneSimulator.create()
    trust = _provision(tmp_path, sim)
    sim.add_image("ecu.img", b"image", [HW], 1)
    sim.assign(SERIAL, HW, "ecu.img")
    (tmp_path / "director.json").unlink()
    with pytest.raises(VerificationFailed, match="cannot read trusted director root"):
        trust.verify(sim.bundle().to_bytes(), 0)
