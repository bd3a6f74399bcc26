"""The Uptane attack suite: one named test per attack, each asserting the defence that stops it.

Every test builds genuinely signed metadata, then plays the attacker with the
keys that attacker would hold. Each asserts the *specific* refusal, so
removing the defence makes the test fail rather than fail for another reason.
Network-level attacks (endless data, slow retrieval) are in
tests/integration/uptane/test_network_attacks.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from redstone_agent.uptane.bundle import DIRECTOR, IMAGE, MetadataBundle, RepositoryMetadata
from redstone_agent.uptane.errors import CrossCheckError, ManifestError, MetadataError
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.manifests import (
    EcuManifest,
    installation_gaps,
    new_nonce,
    sign_ecu_manifest,
    sign_vehicle_manifest,
    verify_vehicle_manifest,
)
from redstone_agent.uptane.repository import TOP_LEVEL, Repository, RoleKeys
from redstone_agent.uptane.simulator import UptaneSimulator
from redstone_agent.uptane.tufapi import Metadata, Signer, TargetFile
from redstone_agent.uptane.verifier import EcuState, TrustedRoots, verify_full, verify_partial

EVIL = b"attacker firmware"


def forge(data: bytes, signers: list[Signer], mutate: Callable[[Any], None] | None = None) -> bytes:
    """Re-sign (optionally edited) metadata with exactly ``signers``."""
    md = Metadata[Any].from_bytes(data)
    if mutate is not None:
        mutate(md.signed)
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes()


def swap(bundle: MetadataBundle, repo: str, role: str, data: bytes) -> MetadataBundle:
    old = bundle.repository(repo)
    entry = RepositoryMetadata(old.roots, {**old.roles, role: data})
    return MetadataBundle({**bundle.repositories, repo: entry})


def evil_target(path: str, custom: dict[str, Any]) -> TargetFile:
    digest = hashlib.sha256(EVIL).hexdigest()
    return TargetFile(len(EVIL), {"sha256": digest}, path, {"custom": custom})


def director_custom(serial: str, hw: str, counter: int) -> dict[str, Any]:
    return {"ecus": {serial: {"hardware_id": hw}}, "release_counter": counter}


# ------------------------------------------------------------ arbitrary software
def test_arbitrary_software_unsigned_metadata_rejected(sim: UptaneSimulator) -> None:
    bundle = sim.bundle()
    md = Metadata[Any].from_bytes(bundle.repository(DIRECTOR).roles["targets"])
    md.signed.targets["tbox/tbox-2.0.img"] = evil_target(
        "tbox/tbox-2.0.img", director_custom("TBOX-1", "hw-tbox", 5)
    )
    md.signatures.clear()
    with pytest.raises(MetadataError, match=r"director repository: .*(Unsigned|hash|length)"):
        verify_full(swap(bundle, DIRECTOR, "targets", md.to_bytes()), sim.trusted_roots())


def test_arbitrary_software_below_threshold_rejected() -> None:
    """The image targets role needs 2 of 2 signatures; one stolen key is not enough."""
    keys = {role: RoleKeys([generate_signer()]) for role in TOP_LEVEL}
    keys["targets"] = RoleKeys([generate_signer(), generate_signer()], threshold=2)
    image = Repository.create(IMAGE, keys)
    sim = UptaneSimulator(image, UptaneSimulator.create().director)
    sim.add_image("tbox/t.img", b"good", ["hw"], 1)
    sim.assign("T1", "hw", "tbox/t.img")
    stolen = image.signers["targets"][0]
    forged = forge(
        image.to_bytes("targets"),
        [stolen],
        lambda s: s.targets.update(
            {
                "tbox/t.img": evil_target(
                    "tbox/t.img", {"hardware_ids": ["hw"], "release_counter": 1}
                )
            }
        ),
    )
    with pytest.raises(MetadataError, match=r"image repository: .*targets was signed by 1/2 keys"):
        verify_full(_resnapshot(sim.image, forged, sim), sim.trusted_roots())


def _resnapshot(repo: Repository, forged_targets: bytes, sim: UptaneSimulator) -> MetadataBundle:
    """Install forged targets; with the online snapshot/timestamp keys, make them consistent."""
    repo.roles["targets"] = Metadata[Any].from_bytes(forged_targets)
    repo.commit()  # nothing marked dirty: only snapshot and timestamp are re-signed
    return sim.bundle()


def test_arbitrary_software_signed_by_wrong_role_rejected(sim: UptaneSimulator) -> None:
    """Stolen online snapshot+timestamp keys: the snapshot key signs director targets."""
    snapshot_key = sim.director.signers["snapshot"][0]
    forged = forge(
        sim.director.to_bytes("targets"),
        [snapshot_key],
        lambda s: s.targets.update(
            {"evil.bin": evil_target("evil.bin", director_custom("TBOX-1", "hw-tbox", 9))}
        ),
    )
    with pytest.raises(MetadataError, match=r"director repository: .*targets was signed by 0/1"):
        verify_full(_resnapshot(sim.director, forged, sim), sim.trusted_roots())


def test_supplier_cannot_sign_outside_its_delegated_paths(sim: UptaneSimulator) -> None:
    """The brake supplier's key signs a TBox image: the walk never trusts it for that path."""
    supplier = sim.image.signers["supplier-brakes"][0]
    sim.image.roles["supplier-brakes"] = Metadata[Any].from_bytes(
        forge(
            sim.image.to_bytes("supplier-brakes"),
            [supplier],
            lambda s: s.targets.update(
                {
                    "tbox/evil.img": evil_target(
                        "tbox/evil.img", {"hardware_ids": ["hw-tbox"], "release_counter": 9}
                    )
                }
            ),
        )
    )
    sim.image.dirty.add("supplier-brakes")
    sim.image.commit()
    sim.assign("TBOX-1", "hw-tbox", "tbox/evil.img", data=EVIL, release_counter=9)
    with pytest.raises(CrossCheckError, match=r"image repository has no target 'tbox/evil.img'"):
        verify_full(sim.bundle(), sim.trusted_roots())


# ----------------------------------------------------------------------- rollback
def test_metadata_version_rollback_rejected(sim: UptaneSimulator) -> None:
    old = sim.bundle()
    sim.add_image("tbox/tbox-2.1.img", b"tbox v2.1", ["hw-tbox"], 6)
    sim.assign("TBOX-1", "hw-tbox", "tbox/tbox-2.1.img")
    newer = sim.bundle()
    verify_full(newer, sim.trusted_roots())
    with pytest.raises(MetadataError, match="BadVersionNumberError"):
        verify_full(old, sim.trusted_roots(), previous=newer)


def test_timestamp_version_rollback_rejected(sim: UptaneSimulator) -> None:
    """Only the last timestamp is remembered: an older (validly signed) one is refused."""
    old = sim.bundle()
    sim.add_image("tbox/tbox-2.1.img", b"tbox v2.1", ["hw-tbox"], 6)
    newer = sim.bundle()
    remembered = RepositoryMetadata(
        newer.repository(IMAGE).roots, {"timestamp": newer.repository(IMAGE).roles["timestamp"]}
    )
    previous = MetadataBundle({**newer.repositories, IMAGE: remembered})
    with pytest.raises(
        MetadataError, match=r"image repository: .*New timestamp version \d+ must be >="
    ):
        verify_full(old, sim.trusted_roots(), previous=previous)


def test_image_release_counter_rollback_rejected(sim: UptaneSimulator) -> None:
    """Director (and image repo) validly sign an old image; the ECU already runs counter 4."""
    with pytest.raises(CrossCheckError, match=r"ABS-1: release counter 3 .* below the installed 4"):
        verify_full(sim.bundle(), sim.trusted_roots(), ecus={"ABS-1": EcuState("hw-abs", 4)})


def test_image_release_counter_rollback_rejected_in_partial_verification(
    sim: UptaneSimulator,
) -> None:
    bundle = sim.bundle().for_partial_verification()
    with pytest.raises(CrossCheckError, match="rollback"):
        verify_partial(bundle, sim.director.roots[0], "ABS-1", ecu=EcuState("hw-abs", 4))


def test_director_targets_version_rollback_rejected_in_partial_verification(
    sim: UptaneSimulator,
) -> None:
    bundle = sim.bundle().for_partial_verification()
    with pytest.raises(MetadataError, match="older than trusted"):
        verify_partial(bundle, sim.director.roots[0], "ABS-1", previous_targets_version=99)


# ------------------------------------------------------------------------- freeze
def test_freeze_expired_timestamp_rejected(sim: UptaneSimulator) -> None:
    """Replaying yesterday's (validly signed) metadata: the timestamp has expired."""
    later = sim.image.clock() + timedelta(days=2)  # timestamp lives 1 day, the rest longer
    with pytest.raises(MetadataError, match=r"ExpiredMetadataError: timestamp.json is expired"):
        verify_full(sim.bundle(), sim.trusted_roots(), clock=lambda: later)


def test_freeze_expired_director_targets_rejected_in_partial_verification(
    sim: UptaneSimulator,
) -> None:
    later = sim.director.clock() + timedelta(days=120)
    with pytest.raises(MetadataError, match="targets is expired"):
        verify_partial(
            sim.bundle().for_partial_verification(),
            sim.director.roots[0],
            "ABS-1",
            clock=lambda: later,
        )


# ------------------------------------------------------------------ mix and match
def test_mix_and_match_rejected_by_snapshot_pinning(sim: UptaneSimulator) -> None:
    """Validly signed director targets from one state, snapshot from another."""
    old = sim.bundle()
    sim.add_image("tbox/tbox-2.1.img", b"tbox v2.1", ["hw-tbox"], 6)
    sim.assign("TBOX-1", "hw-tbox", "tbox/tbox-2.1.img")
    new_targets = sim.bundle().repository(DIRECTOR).roles["targets"]
    mixed = swap(old, DIRECTOR, "targets", new_targets)
    with pytest.raises(MetadataError, match=r"director repository: .*(BadVersionNumber|length)"):
        verify_full(mixed, sim.trusted_roots())


# ------------------------------------------------------------ director compromise
def test_director_only_compromise_naming_unknown_image_rejected(sim: UptaneSimulator) -> None:
    """The attacker holds every director key and assigns an image the image repo lacks."""
    sim.assign("TBOX-1", "hw-tbox", "tbox/evil.img", data=EVIL, release_counter=9)
    with pytest.raises(CrossCheckError, match="TBOX-1: image repository has no target"):
        verify_full(sim.bundle(), sim.trusted_roots())


def test_director_only_compromise_with_other_hash_rejected(sim: UptaneSimulator) -> None:
    """A known image name, but the attacker's bytes (same length, other hash)."""
    evil = b"x" * len(b"abs firmware")
    sim.assign("ABS-1", "hw-abs", "brakes/abs-1.4.bin", data=evil)
    with pytest.raises(
        CrossCheckError, match=r"ABS-1: brakes/abs-1.4.bin: director and image hashes differ"
    ):
        verify_full(sim.bundle(), sim.trusted_roots())


def test_director_only_compromise_with_other_length_rejected(sim: UptaneSimulator) -> None:
    sim.assign("ABS-1", "hw-abs", "brakes/abs-1.4.bin", data=b"abs firmware, longer")
    with pytest.raises(CrossCheckError, match="director length"):
        verify_full(sim.bundle(), sim.trusted_roots())


# ------------------------------------------------------- image repository compromise
def test_image_repository_only_compromise_rejected(sim: UptaneSimulator) -> None:
    """All image-repo keys stolen: the attacker swaps the assigned image's bytes.

    The director still names the genuine hash, so the cross-check refuses; and
    an extra image the director never assigned is simply never installed.
    """
    sim.add_image("tbox/tbox-2.0.img", EVIL, ["hw-tbox"], 5)
    sim.add_image("tbox/backdoor.img", EVIL, ["hw-tbox"], 99)
    with pytest.raises(CrossCheckError, match=r"TBOX-1: tbox/tbox-2.0.img: director length"):
        verify_full(sim.bundle(), sim.trusted_roots())
    sim.add_image("tbox/tbox-2.0.img", b"tbox image v2", ["hw-tbox"], 5)  # repaired
    result = verify_full(sim.bundle(), sim.trusted_roots())
    assert "tbox/backdoor.img" not in {t.filename for t in result.targets.values()}


# --------------------------------------------------------------- wrong hardware id
def test_wrong_hardware_id_image_not_built_for_ecu_rejected(sim: UptaneSimulator) -> None:
    """Director assigns the TBox image to the ABS ECU (honestly naming its hardware id)."""
    sim.assign("ABS-1", "hw-abs", "tbox/tbox-2.0.img")
    with pytest.raises(CrossCheckError, match="is not built for hardware id 'hw-abs'"):
        verify_full(sim.bundle(), sim.trusted_roots())


def test_wrong_hardware_id_director_lying_about_ecu_rejected(sim: UptaneSimulator) -> None:
    """Director claims the ABS ECU is a TBox to pass the image check; the ECU knows better."""
    sim.assign("ABS-1", "hw-tbox", "tbox/tbox-2.0.img")
    with pytest.raises(
        CrossCheckError, match="director says hardware id 'hw-tbox', ECU is 'hw-abs'"
    ):
        verify_full(sim.bundle(), sim.trusted_roots(), ecus={"ABS-1": EcuState("hw-abs")})


# ------------------------------------------------------------------- root rotation
def _rotate_root(repo: Repository, keep_old_signer: bool) -> None:
    old = repo.signers["root"][0]
    repo.rotate_key("root", old.public_key.keyid, generate_signer())
    if not keep_old_signer:
        repo.signers.pop("root-old")
    repo.commit()


def test_root_rotation_done_right_is_followed(sim: UptaneSimulator) -> None:
    _rotate_root(sim.director, keep_old_signer=True)
    result = verify_full(sim.bundle(), sim.trusted_roots())
    assert result.new_roots[DIRECTOR] == sim.director.roots[1]
    # the next run trusts the new root directly
    rotated = replace(sim.trusted_roots(), director=result.new_roots[DIRECTOR])
    verify_full(sim.bundle(), rotated)


def test_root_rotation_without_old_keys_rejected(sim: UptaneSimulator) -> None:
    """A thief with only fresh keys cannot announce a new root: old threshold is missing."""
    with pytest.raises(Exception, match="thresholds of old and new root keys"):
        _rotate_root(sim.director, keep_old_signer=False)
    # forge it anyway, signing the new root with the new key only
    md = Metadata[Any].from_bytes(sim.director.roots[0])
    attacker = generate_signer()
    md.signed.version = 2
    for keyid in list(md.signed.roles["root"].keyids):
        md.signed.revoke_key(keyid, "root")
    md.signed.add_key(attacker.public_key, "root")
    forged = forge(md.to_bytes(), [attacker])
    bundle = sim.bundle()
    entry = bundle.repository(DIRECTOR)
    bad = MetadataBundle(
        {**bundle.repositories, DIRECTOR: RepositoryMetadata((*entry.roots, forged), entry.roles)}
    )
    with pytest.raises(MetadataError, match=r"director repository: .*root"):
        verify_full(bad, sim.trusted_roots())


def test_root_rotation_skipping_a_version_rejected(sim: UptaneSimulator) -> None:
    """A root signed by the trusted keys but jumping from version 1 to 3."""
    root_key = sim.director.signers["root"][0]
    jumped = forge(sim.director.roots[0], [root_key], lambda s: setattr(s, "version", 3))
    bundle = sim.bundle()
    entry = bundle.repository(DIRECTOR)
    skipping = RepositoryMetadata((entry.roots[0], jumped), entry.roles)
    with pytest.raises(MetadataError, match="Expected root version 2 instead got version 3"):
        verify_full(
            MetadataBundle({**bundle.repositories, DIRECTOR: skipping}), sim.trusted_roots()
        )


# ------------------------------------------------------------- partial installation
def test_partial_installation_detected_from_vehicle_manifest(sim: UptaneSimulator) -> None:
    """TBox updated, ABS still on its old image: the signed manifest shows the gap."""
    assigned = verify_full(sim.bundle(), sim.trusted_roots()).targets
    primary, tbox_key, abs_key = generate_signer(), generate_signer(), generate_signer("ecdsa-p256")
    tbox = assigned["TBOX-1"]
    reports = {
        "TBOX-1": sign_ecu_manifest(
            EcuManifest("TBOX-1", tbox.filename, tbox.length, tbox.sha256, tbox.release_counter),
            tbox_key,
        ),
        "ABS-1": sign_ecu_manifest(
            EcuManifest("ABS-1", "brakes/abs-1.3.bin", 10, "ab" * 32, 2), abs_key
        ),
    }
    nonce = new_nonce()
    data = sign_vehicle_manifest("VIN123", "TBOX-1", nonce, reports, primary)
    manifest = verify_vehicle_manifest(
        data,
        primary.public_key,
        {"TBOX-1": tbox_key.public_key, "ABS-1": abs_key.public_key},
        expected_nonce=nonce,
    )
    gaps = installation_gaps(manifest, {s: t.sha256 for s, t in assigned.items()})
    assert set(gaps) == {"ABS-1"}
    assert "brakes/abs-1.3.bin" in gaps["ABS-1"]


def test_replayed_vehicle_manifest_rejected_by_nonce(sim: UptaneSimulator) -> None:
    primary = generate_signer()
    data = sign_vehicle_manifest("VIN123", "TBOX-1", new_nonce(), {}, primary)
    with pytest.raises(ManifestError, match="nonce does not match"):
        verify_vehicle_manifest(data, primary.public_key, {}, expected_nonce=new_nonce())


def test_untrusted_root_in_trusted_roots_is_caller_error(sim: UptaneSimulator) -> None:
    """Bundle roots never replace the verifier's own trust anchor."""
    other = UptaneSimulator.create()
    roots = TrustedRoots(other.director.roots[0], sim.image.roots[0])
    with pytest.raises(MetadataError, match="director repository"):
        verify_full(sim.bundle(), roots)
