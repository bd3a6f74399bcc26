"""The Primary over real HTTP: refresh, cross-check, forwarded bundle, resumable download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from redstone_agent.uptane.bundle import MetadataBundle
from redstone_agent.uptane.errors import CrossCheckError, DownloadError
from redstone_agent.uptane.keys import generate_signer
from redstone_agent.uptane.verifier import EcuState, verify_full, verify_partial
from tests.integration.uptane.conftest import IMAGE, Published


def test_primary_verifies_and_forwards_exactly_what_a_sub_accepts(
    published: Published, tmp_path: Path
) -> None:
    result = published.verifier(tmp_path / "cache").refresh({"ABS-1": EcuState("hw-abs", 2)})
    assert result.targets["ABS-1"].sha256 == hashlib.sha256(IMAGE).hexdigest()
    wire = result.bundle.to_bytes()
    # the Sub: no network, its own roots
    sub = verify_full(
        MetadataBundle.from_bytes(wire),
        published.sim.trusted_roots(),
        ecus={"ABS-1": EcuState("hw-abs", 2)},
        only_known_ecus=True,
    )
    assert sub.targets["ABS-1"] == result.targets["ABS-1"]
    partial = verify_partial(
        MetadataBundle.from_bytes(wire).for_partial_verification(),
        published.sim.director.roots[0],
        "ABS-1",
    )
    assert partial.targets["ABS-1"].sha256 == result.targets["ABS-1"].sha256


def test_second_refresh_uses_cache_and_sees_updates(published: Published, tmp_path: Path) -> None:
    verifier = published.verifier(tmp_path / "cache")
    first = verifier.refresh()
    published.sim.add_image("tbox/tbox-2.img", b"tbox 2", ["hw-tbox"], 2)
    published.sim.assign("TBOX-1", "hw-tbox", "tbox/tbox-2.img")
    published.publish()
    second = verifier.refresh(previous=first.bundle)
    assert second.targets["TBOX-1"].filename == "tbox/tbox-2.img"
    assert (
        second.verification.director_targets_version > first.verification.director_targets_version
    )


def test_cross_check_failure_over_network_names_the_ecu(
    published: Published, tmp_path: Path
) -> None:
    published.sim.assign("ABS-1", "hw-abs", "brakes/abs-1.4.bin", data=b"evil")
    published.publish()
    with pytest.raises(CrossCheckError, match="ECU ABS-1"):
        published.verifier(tmp_path / "cache").refresh()


def test_target_download_resumes_with_range(published: Published, tmp_path: Path) -> None:
    verifier = published.verifier(tmp_path / "cache")
    target = verifier.refresh().targets["ABS-1"]
    url_path = f"/image/targets/brakes/{target.sha256}.abs-1.4.bin"
    published.server.faults[url_path] = "cut:30000"
    seen: list[int] = []
    dest = verifier.download(target, tmp_path / "abs.bin", progress=lambda d, t: seen.append(d))
    assert dest.read_bytes() == IMAGE
    assert not (tmp_path / "abs.bin.part").exists()
    assert seen[-1] == len(IMAGE)
    assert published.server.requests.count(url_path) == 2  # the retry resumed, not restarted


def test_target_with_wrong_content_is_never_given_its_name(
    published: Published, tmp_path: Path
) -> None:
    verifier = published.verifier(tmp_path / "cache")
    target = verifier.refresh().targets["ABS-1"]
    served = published.root / "image" / "targets" / "brakes" / f"{target.sha256}.abs-1.4.bin"
    served.write_bytes(b"X" * len(IMAGE))
    with pytest.raises(DownloadError, match="does not match the verified sha256"):
        verifier.download(target, tmp_path / "abs.bin")
    assert not (tmp_path / "abs.bin").exists()
    assert not (tmp_path / "abs.bin.part").exists()


def test_missing_target_is_a_clear_error(published: Published, tmp_path: Path) -> None:
    verifier = published.verifier(tmp_path / "cache")
    target = verifier.refresh().targets["ABS-1"]
    (published.root / "image" / "targets" / "brakes" / f"{target.sha256}.abs-1.4.bin").unlink()
    with pytest.raises(DownloadError, match="HTTP 404"):
        verifier.download(target, tmp_path / "abs.bin")


def test_transient_server_error_is_retried(published: Published, tmp_path: Path) -> None:
    published.server.faults["/director/metadata/timestamp.json"] = "status:503"
    result = published.verifier(tmp_path / "cache").refresh()
    assert "ABS-1" in result.targets


def test_unreachable_repository_is_a_download_error(published: Published, tmp_path: Path) -> None:
    verifier = published.verifier(tmp_path / "cache")
    published.server.faults["/image/metadata/timestamp.json"] = "status:404"
    with pytest.raises(DownloadError, match="image repository"):
        verifier.refresh()


def test_target_download_retries_a_transient_server_error(
    published: Published, tmp_path: Path
) -> None:
    verifier = published.verifier(tmp_path / "cache")
    target = verifier.refresh().targets["ABS-1"]
    published.server.faults[f"/image/targets/brakes/{target.sha256}.abs-1.4.bin"] = "status:503"
    assert verifier.download(target, tmp_path / "abs.bin").read_bytes() == IMAGE


def test_primary_follows_director_root_rotation(published: Published, tmp_path: Path) -> None:
    director = published.sim.director
    old = director.signers["root"][0].public_key.keyid
    director.rotate_key("root", old, generate_signer())
    director.commit()
    published.publish()
    result = published.verifier(tmp_path / "cache").refresh()
    assert result.verification.new_roots["director"] == director.roots[1]
    assert len(result.bundle.repository("director").roots) == 2  # Subs can follow too
