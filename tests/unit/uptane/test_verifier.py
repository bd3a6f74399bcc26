"""Happy paths of full and partial verification, and what the result carries."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest

from redstone_agent.uptane.bundle import MetadataBundle
from redstone_agent.uptane.errors import UptaneError
from redstone_agent.uptane.simulator import UptaneSimulator
from redstone_agent.uptane.verifier import EcuState, verify_full, verify_partial


def test_full_verification_returns_each_ecus_cross_checked_target(sim: UptaneSimulator) -> None:
    result = verify_full(
        sim.bundle(),
        sim.trusted_roots(),
        ecus={"ABS-1": EcuState("hw-abs", 2), "TBOX-1": EcuState("hw-tbox", 5)},
    )
    abs_target = result.targets["ABS-1"]
    assert abs_target.filename == "brakes/abs-1.4.bin"
    assert abs_target.sha256 == hashlib.sha256(b"abs firmware").hexdigest()
    assert (abs_target.length, abs_target.hardware_id, abs_target.release_counter) == (
        len(b"abs firmware"),
        "hw-abs",
        3,
    )
    assert result.targets["TBOX-1"].custom == {"version": "2.0"}
    assert "supplier-brakes" in result.image_roles_used
    assert result.new_roots == {}


def test_bundle_survives_its_wire_form(sim: UptaneSimulator) -> None:
    wire = sim.bundle().to_bytes()
    result = verify_full(MetadataBundle.from_bytes(wire), sim.trusted_roots())
    assert set(result.targets) == {"ABS-1", "TBOX-1"}


def test_sub_sees_only_its_own_ecu(sim: UptaneSimulator) -> None:
    result = verify_full(
        sim.bundle(), sim.trusted_roots(), ecus={"ABS-1": EcuState("hw-abs")}, only_known_ecus=True
    )
    assert set(result.targets) == {"ABS-1"}


def test_partial_verification_uses_director_targets_only(sim: UptaneSimulator) -> None:
    partial = sim.bundle().for_partial_verification()
    assert set(partial.repositories) == {"director"}
    result = verify_partial(partial, sim.director.roots[0], "ABS-1", ecu=EcuState("hw-abs"))
    assert result.targets["ABS-1"].sha256 == hashlib.sha256(b"abs firmware").hexdigest()
    assert verify_partial(partial, sim.director.roots[0], "NOT-ASSIGNED").targets == {}


def test_previous_bundle_of_same_versions_is_accepted(sim: UptaneSimulator) -> None:
    bundle = sim.bundle()
    verify_full(bundle, sim.trusted_roots(), previous=bundle)


def test_delta_source_hash_is_carried_when_both_repositories_agree() -> None:
    sim = UptaneSimulator.create()
    source = hashlib.sha256(b"old image").hexdigest()
    sim.add_image("ecu/delta-1-2.bin", b"delta", ["hw"], 2, delta_source_sha256=source)
    sim.assign("E1", "hw", "ecu/delta-1-2.bin", delta_source_sha256=source)
    result = verify_full(sim.bundle(), sim.trusted_roots())
    assert result.targets["E1"].delta_source_sha256 == source


def test_verified_target_checks_downloaded_content(sim: UptaneSimulator) -> None:
    target = verify_full(sim.bundle(), sim.trusted_roots()).targets["ABS-1"]
    target.check_data(io.BytesIO(b"abs firmware"))
    for bad in (b"abs firmwarX", b"abs firmware" + b"!", b"abs"):
        with pytest.raises(UptaneError, match="does not match"):
            target.check_data(io.BytesIO(bad))


def test_time_source_is_the_callers(sim: UptaneSimulator) -> None:
    """A Sub whose clock is a year behind still accepts; a year ahead rejects."""
    now = sim.image.clock()
    verify_full(sim.bundle(), sim.trusted_roots(), clock=lambda: now - timedelta(days=365))
    with pytest.raises(UptaneError, match="expired"):
        verify_full(sim.bundle(), sim.trusted_roots(), clock=lambda: now + timedelta(days=365))
