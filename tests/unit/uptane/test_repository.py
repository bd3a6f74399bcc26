"""Repository editing: thresholds, delegations, assignments, rotation, signing refusals."""

from __future__ import annotations

import pytest

from redstone_agent.uptane.bundle import DIRECTOR, IMAGE
from redstone_agent.uptane.errors import RepositoryToolError
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.repository import TOP_LEVEL, Assignment, Repository, RoleKeys
from redstone_agent.uptane.simulator import UptaneSimulator, new_repository
from redstone_agent.uptane.targetinfo import published_name
from redstone_agent.uptane.verifier import verify_full

SHA = "ab" * 32


def test_create_refuses_missing_roles_and_impossible_thresholds() -> None:
    with pytest.raises(RepositoryToolError, match="no keys given for snapshot, timestamp"):
        Repository.create(IMAGE, {r: RoleKeys([generate_signer()]) for r in ("root", "targets")})
    keys = {r: RoleKeys([generate_signer()]) for r in TOP_LEVEL}
    keys["root"] = RoleKeys([generate_signer()], threshold=2)
    with pytest.raises(RepositoryToolError, match="root threshold 2"):
        Repository.create(IMAGE, keys)


def test_commit_bumps_only_changed_roles_plus_snapshot_and_timestamp() -> None:
    repo = new_repository(IMAGE)
    before = {r: m.signed.version for r, m in repo.roles.items()}
    repo.add_target("a.bin", b"a")
    assert repo.commit() == ["targets"]
    after = {r: m.signed.version for r, m in repo.roles.items()}
    assert after == {**before, "targets": 2, "snapshot": 2, "timestamp": 2}


def test_commit_without_enough_keys_changes_nothing() -> None:
    repo = new_repository(IMAGE)
    repo.add_target("a.bin", b"a")
    repo.signers["targets"] = []
    with pytest.raises(RepositoryToolError, match="targets needs 1 signing key"):
        repo.commit()
    assert repo.roles["targets"].signed.version == 1
    assert repo.roles["snapshot"].signed.version == 1


def test_supplier_cannot_add_outside_its_paths() -> None:
    repo = new_repository(IMAGE)
    repo.delegate("sup", RoleKeys([generate_signer()]), ["sup/*"])
    with pytest.raises(RepositoryToolError, match=r"sup is not trusted for 'other/x.bin'"):
        repo.add_target("other/x.bin", b"x", role="sup")
    with pytest.raises(RepositoryToolError, match="already exists"):
        repo.delegate("sup", RoleKeys([generate_signer()]), ["sup/*"])


def test_director_merges_ecus_sharing_a_file_and_refuses_conflicts() -> None:
    repo = new_repository(DIRECTOR)
    same = [Assignment(f"E{i}", "hw", "f.bin", 5, SHA, 2) for i in range(3)]
    repo.assign(same)
    custom = repo.targets_role().targets["f.bin"].custom
    assert custom["ecus"] == {f"E{i}": {"hardware_id": "hw"} for i in range(3)}
    with pytest.raises(RepositoryToolError, match=r"conflicting assignments for 'f.bin'"):
        repo.assign([*same, Assignment("E9", "hw", "f.bin", 5, SHA, 3)])


def test_targets_key_rotation_is_followed_by_clients() -> None:
    sim = UptaneSimulator.create()
    sim.add_image("a.bin", b"a", ["hw"], 1)
    sim.assign("E1", "hw", "a.bin")
    old = sim.image.signers["targets"][0].public_key.keyid
    sim.image.rotate_key("targets", old, generate_signer("ecdsa-p256"))
    sim.image.commit()
    assert sim.image.root.version == 2
    result = verify_full(sim.bundle(), sim.trusted_roots())
    assert "image" in result.new_roots and "E1" in result.targets


def test_rotate_unknown_key_and_bad_threshold_refused() -> None:
    repo = new_repository(IMAGE)
    with pytest.raises(RepositoryToolError, match="has no key"):
        repo.rotate_key("targets", "00" * 32, generate_signer())
    with pytest.raises(RepositoryToolError, match=r"threshold must be 1\.\.1"):
        repo.set_threshold("targets", 2)
    with pytest.raises(RepositoryToolError, match="no role delegates to 'ghost'"):
        repo.delegator_of("ghost")


def test_root_threshold_raise_needs_the_new_keys_too() -> None:
    repo = new_repository(IMAGE)
    extra = generate_signer()
    repo.root.add_key(extra.public_key, "root")
    repo.set_threshold("root", 2)
    with pytest.raises(RepositoryToolError, match="thresholds of old and new root keys"):
        repo.commit()
    repo.add_signer("root", extra)
    repo.commit()
    assert len(repo.roots) == 2


def test_published_name_prefixes_the_basename_with_the_sha256() -> None:
    assert published_name("brakes/abs/fw.bin", SHA) == f"brakes/abs/{SHA}.fw.bin"
    assert published_name("tbox.img", SHA) == f"{SHA}.tbox.img"


def test_delegation_with_an_impossible_threshold_changes_nothing() -> None:
    repo = new_repository(IMAGE)
    before = repo.to_bytes("targets")
    with pytest.raises(RepositoryToolError, match="supplier threshold 2 needs at least as many"):
        repo.delegate("supplier", RoleKeys([generate_signer()], threshold=2), ["a/*"])
    assert repo.to_bytes("targets") == before
    assert "supplier" not in repo.roles and not repo.dirty
