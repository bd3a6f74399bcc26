"""The Sub keeps a rotated root it verified; Install must match the verified assignment."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from redstone_agent.journal import Journal
from redstone_agent.someip.messages import DeltaInfo, InstallRequest
from redstone_agent.sub.config import TrustConfig
from redstone_agent.sub.errors import NoMetadata, VerificationFailed
from redstone_agent.sub.trust import Assignment, SubTrust, check_install
from redstone_agent.uptane.bundle import MetadataBundle
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.simulator import UptaneSimulator

SERIAL, HW = "ECU-1", "hw-1"


def _provision(tmp_path: Path, sim: UptaneSimulator) -> SubTrust:
    roots = sim.trusted_roots()
    (tmp_path / "director.json").write_bytes(roots.director)
    assert roots.image is not None
    (tmp_path / "image.json").write_bytes(roots.image)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
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
    assert sorted(p.name for p in state.iterdir()) == ["director.root.json", "metadata.json"]
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


# -- anti-rollback of metadata: a replayed older bundle is refused ------------------------


def _partial(tmp_path: Path, sim: UptaneSimulator) -> SubTrust:
    (tmp_path / "director.json").write_bytes(sim.trusted_roots().director)
    (tmp_path / "state").mkdir(exist_ok=True)
    config = TrustConfig(tmp_path / "director.json", None, "partial")
    return SubTrust(config, SERIAL, HW, tmp_path / "state")


@pytest.mark.parametrize("mode", ["full", "partial"])
def test_a_replayed_older_assignment_is_refused_even_after_a_restart(
    tmp_path: Path, mode: str
) -> None:
    """A compromised Master keeps an old, still valid bundle and replays it later."""
    sim = UptaneSimulator.create()
    provision = _provision if mode == "full" else _partial
    sim.add_image("v1.img", b"one", [HW], 1)
    sim.add_image("v1b.img", b"one, again", [HW], 1)
    sim.assign(SERIAL, HW, "v1.img")
    old = sim.bundle().to_bytes()
    if mode == "partial":
        old = sim.bundle().for_partial_verification().to_bytes()
    assert provision(tmp_path, sim).verify(old, 0).filename == "v1.img"
    sim.assign(SERIAL, HW, "v1b.img")  # same release counter: that check cannot help
    new = sim.bundle()
    newer = (new if mode == "full" else new.for_partial_verification()).to_bytes()
    assert provision(tmp_path, sim).verify(newer, 0).filename == "v1b.img"

    restarted = provision(tmp_path, sim)  # a new process: only the journal remembers
    with pytest.raises(VerificationFailed, match="version") as refused:
        restarted.verify(old, 0)
    assert "\n" not in str(refused.value)
    # The Master repeating the current bundle is no replay.
    assert restarted.verify(newer, 0).filename == "v1b.img"


def test_an_older_image_repository_beside_a_newer_director_is_refused(tmp_path: Path) -> None:
    sim = UptaneSimulator.create()
    trust = _provision(tmp_path, sim)
    sim.add_image("v1.img", b"one", [HW], 1)
    sim.assign(SERIAL, HW, "v1.img")
    old_image = sim.bundle().repositories["image"]
    sim.add_image("v2.img", b"two", [HW], 2)
    trust.verify(sim.bundle().to_bytes(), 0)
    spliced = MetadataBundle({**sim.bundle().repositories, "image": old_image})
    with pytest.raises(VerificationFailed, match="image repository: BadVersionNumberError"):
        trust.verify(spliced.to_bytes(), 0)


def test_a_bundle_assigning_nothing_still_raises_the_floor(tmp_path: Path) -> None:
    sim = UptaneSimulator.create()
    trust = _provision(tmp_path, sim)
    sim.add_image("v1.img", b"one", [HW], 1)
    sim.assign(SERIAL, HW, "v1.img")
    old = sim.bundle().to_bytes()
    sim.assignments.clear()
    sim.commit_director()
    with pytest.raises(VerificationFailed, match="assigns nothing"):
        trust.verify(sim.bundle().to_bytes(), 0)
    with pytest.raises(VerificationFailed, match="BadVersionNumberError"):
        trust.verify(old, 0)


def test_an_unreadable_floor_journal_is_reported_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = UptaneSimulator.create()
    trust = _provision(tmp_path, sim)
    sim.add_image("v1.img", b"one", [HW], 1)
    sim.assign(SERIAL, HW, "v1.img")
    (tmp_path / "state" / "metadata.json").write_bytes(b"{torn")
    assert trust.verify(sim.bundle().to_bytes(), 0).filename == "v1.img"
    assert "metadata rollback floor lost" in caplog.text
    assert Journal(tmp_path / "state" / "metadata.json").load() is not None


# -- check_install: the Install must be the verified assignment --------------------------

D_SHA, R_SHA, S1 = (hashlib.sha256(x).digest() for x in (b"delta", b"result", b"source"))
DELTA_ASSIGNMENT = Assignment(
    "app.img.from-0123456789abcdef.rsdelta", 500, D_SHA.hex(), 2, S1.hex()
)
FULL_ASSIGNMENT = Assignment("app.img", 9000, R_SHA.hex(), 2)


def delta_request(**changes: Any) -> InstallRequest:
    """What a Master sends for DELTA_ASSIGNMENT: the result image, and the delta file."""
    delta = DeltaInfo("http://cache/d", D_SHA, 500, S1)
    fields: dict[str, Any] = {
        "target": DELTA_ASSIGNMENT.filename,
        "url": "http://cache/d",
        "sha256": R_SHA,
        "length": 9000,
        "delta": delta,
    }
    for key, value in changes.items():
        if key.startswith("delta_"):
            fields["delta"] = replace(fields["delta"], **{key.removeprefix("delta_"): value})
        else:
            fields[key] = value
    return InstallRequest(**fields)


def test_a_delta_assignment_accepts_the_result_image_with_the_signed_delta() -> None:
    check_install(DELTA_ASSIGNMENT, delta_request())
    # The result's own hash and length are not in signed metadata: any is accepted
    # here, the slot layer checks them against the delta's header and output.
    check_install(DELTA_ASSIGNMENT, delta_request(sha256=bytes(32), length=1))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"target": "app.img"}, "is not the assigned"),
        ({"delta": None}, "the assignment is a delta, the request names none"),
        ({"delta_sha256": R_SHA}, "delta sha256 differs from the verified hash"),
        ({"delta_length": 501}, "delta length 501 != verified 500"),
        ({"delta_source_sha256": R_SHA}, "delta source differs from the verified one"),
    ],
)
def test_a_delta_assignment_refuses_each_mismatch_in_one_line(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(VerificationFailed) as refused:
        check_install(DELTA_ASSIGNMENT, delta_request(**changes))
    message = str(refused.value)
    assert message.startswith("install refused: ") and problem in message
    assert "\n" not in message


def test_a_full_assignment_keeps_its_rules_and_allows_an_offered_delta() -> None:
    full = InstallRequest("app.img", "http://cache/f", R_SHA, 9000)
    check_install(FULL_ASSIGNMENT, full)
    check_install(FULL_ASSIGNMENT, replace(full, delta=DeltaInfo("http://c/d", D_SHA, 5, S1)))
    with pytest.raises(VerificationFailed, match="length 500 != verified 9000"):
        check_install(FULL_ASSIGNMENT, replace(full, length=500))
    with pytest.raises(VerificationFailed, match="sha256 differs"):
        check_install(FULL_ASSIGNMENT, replace(full, sha256=D_SHA))
    with pytest.raises(NoMetadata):
        check_install(None, full)
