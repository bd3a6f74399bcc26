"""Offline bundles (uptane.offline): the tar reader against hostile files, and the
verification that must refuse exactly what an online Primary refuses."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from redstone_agent.uptane.errors import (
    DownloadError,
    MetadataError,
    OfflineBundleError,
    UptaneError,
)
from redstone_agent.uptane.offline import (
    MANIFEST,
    BundleLimits,
    BundleManifest,
    OfflineBundle,
    OfflinePrimary,
    metadata_member,
    tar_size,
    tar_stream,
    target_member,
)
from redstone_agent.uptane.simulator import UptaneSimulator
from redstone_agent.uptane.verifier import EcuState

VIN = "RSTEST00000000001"
SERIALS = {"TBOX-1": "hw-tbox", "ABS-1": "hw-abs"}
KNOWN = {serial: EcuState(hw) for serial, hw in SERIALS.items()}


def bundle_members(sim: UptaneSimulator, vin: str = VIN) -> dict[str, bytes]:
    """What the cloud puts in a bundle: manifest, both repositories, the targets."""
    members = {MANIFEST: BundleManifest(vin, "spring", release_notes_url="https://n/1").to_bytes()}
    for name, repo in (("director", sim.director), ("image", sim.image)):
        for filename, data in repo.files().items():
            if filename != "root.json":
                members[metadata_member(name, filename)] = data
    for data in sim.blobs.values():
        members[target_member(hashlib.sha256(data).hexdigest())] = data
    return members


def write_bundle(path: Path, members: dict[str, bytes]) -> Path:
    items = [(name, len(data), lambda data=data: [data]) for name, data in members.items()]
    with path.open("wb") as out:
        for chunk in tar_stream(items, 0):
            out.write(chunk)
    return path


def write_tar(path: Path, entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A tar made by hand, for members our writer would never produce."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def primary(path: Path, sim: UptaneSimulator, tmp_path: Path, **kwargs: object) -> OfflinePrimary:
    options: dict[str, object] = {
        "vin": VIN,
        "serials": list(SERIALS),
        "roots": sim.trusted_roots(),
        "metadata_dir": tmp_path / "uptane",
    }
    options.update(kwargs)
    return OfflinePrimary.open(path, **options)  # type: ignore[arg-type]


@pytest.fixture
def good(sim: UptaneSimulator, tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "good.tar", bundle_members(sim))


# --- the format ---------------------------------------------------------------------------


def test_written_bundle_is_a_plain_tar_of_the_announced_size(
    good: Path, sim: UptaneSimulator
) -> None:
    members = bundle_members(sim)
    assert good.stat().st_size == tar_size([(n, len(d)) for n, d in members.items()], 0)
    with tarfile.open(good) as tar:
        assert sorted(tar.getnames()) == sorted(members)
        manifest = tar.extractfile(MANIFEST)
        assert manifest is not None
        doc = json.loads(manifest.read())
    assert doc["format"] == "redstone-offline-bundle" and doc["format_version"] == 1
    assert doc["vin"] == VIN and doc["release_notes_url"] == "https://n/1"


def test_a_member_shorter_than_announced_stops_the_writer() -> None:
    with pytest.raises(OfflineBundleError, match="got 3 bytes for a member of 4"):
        list(tar_stream([(target_member("a" * 64), 4, lambda: [b"abc"])], 0))


def test_good_bundle_verifies_and_copies_its_targets(
    good: Path, sim: UptaneSimulator, tmp_path: Path
) -> None:
    offline = primary(good, sim, tmp_path)
    assert offline.bundle.manifest.campaign == "spring"
    result = offline.refresh(KNOWN)
    assert {s: t.filename for s, t in result.targets.items()} == {
        "TBOX-1": "tbox/tbox-2.0.img",
        "ABS-1": "brakes/abs-1.4.bin",
    }
    copied = offline.download(result.targets["ABS-1"], tmp_path / "abs")
    assert copied.read_bytes() == b"abs firmware"
    assert not (tmp_path / "abs.part").exists()
    # the accepted metadata is the vehicle's rollback floor from now on
    assert (tmp_path / "uptane" / "director" / "timestamp.json").exists()
    assert offline.image_target("brakes/abs-1.4.bin", "ABS-1", "hw-abs").length == 12


# --- hostile and malformed files ----------------------------------------------------------


def manifest_bytes(**changes: object) -> bytes:
    doc = json.loads(BundleManifest(VIN, "spring").to_bytes())
    doc.update(changes)
    return json.dumps(doc).encode()


HOSTILE: list[tuple[str, list[tuple[tarfile.TarInfo, bytes | None]], str]] = [
    ("symlink", [special("targets/" + "a" * 64, tarfile.SYMTYPE, "/etc/shadow")], "symbolic link"),
    ("hardlink", [special("targets/" + "a" * 64, tarfile.LNKTYPE, MANIFEST)], "hard link"),
    ("directory", [special("director", tarfile.DIRTYPE)], "a directory"),
    ("fifo", [special("manifest.json", tarfile.FIFOTYPE)], "device or FIFO"),
    ("device", [special("manifest.json", tarfile.CHRTYPE)], "device or FIFO"),
    ("dot-dot", [regular("../manifest.json", b"{}")], "not a bundle file name"),
    ("nested dot-dot", [regular("director/../../etc/passwd", b"x")], "not a bundle file name"),
    ("absolute", [regular("/etc/passwd", b"x")], "not a bundle file name"),
    ("unknown", [regular("run-me.sh", b"x")], "not a bundle file name"),
    ("deep target", [regular("targets/a/" + "b" * 64, b"x")], "not a bundle file name"),
    ("target not a hash", [regular("targets/" + "A" * 64, b"x")], "not a bundle file name"),
    ("hidden metadata", [regular("director/.timestamp.json", b"x")], "not a bundle file name"),
    (
        "duplicate",
        [regular(MANIFEST, manifest_bytes()), regular(MANIFEST, manifest_bytes())],
        "appears twice",
    ),
    ("oversized manifest", [regular(MANIFEST, b" " * (64 * 1024 + 1))], "exceed 65536"),
    ("oversized metadata", [regular("director/1.root.json", b" " * 5_242_881)], "exceed 5242880"),
    ("no manifest", [regular("director/timestamp.json", b"{}")], "no manifest.json"),
    ("manifest not JSON", [regular(MANIFEST, b"{nope")], "manifest.json is not JSON"),
    ("deep manifest", [regular(MANIFEST, b"[" * 60_000)], "nested too deeply"),
    ("wrong format", [regular(MANIFEST, manifest_bytes(format="zip"))], "not a redstone-offline"),
    (
        "newer format",
        [regular(MANIFEST, manifest_bytes(format_version=2))],
        "bundle format version 2 is not supported (this reads 1)",
    ),
    ("no VIN", [regular(MANIFEST, manifest_bytes(vin=""))], "vin must be a string"),
    ("bad consent", [regular(MANIFEST, manifest_bytes(consent_required="yes"))], "true or false"),
]


@pytest.mark.parametrize(
    ("entries", "problem"), [(e, p) for _, e, p in HOSTILE], ids=[i for i, _, _ in HOSTILE]
)
def test_hostile_members_are_refused_in_one_line(
    tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], problem: str
) -> None:
    path = write_tar(tmp_path / "hostile.tar", entries)
    with pytest.raises(OfflineBundleError) as refused:
        OfflineBundle.open(path)
    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    entries = [regular(f"targets/{i:064x}", b"") for i in range(6)]
    path = write_tar(tmp_path / "many.tar", entries)
    with pytest.raises(OfflineBundleError, match="more than 5 members"):
        OfflineBundle.open(path, BundleLimits(members=5))


def test_metadata_over_the_total_cap_is_refused(tmp_path: Path) -> None:
    entries = [regular(f"image/{i}.targets.json", b" " * 600) for i in range(4)]
    path = write_tar(tmp_path / "fat.tar", entries)
    with pytest.raises(OfflineBundleError, match="metadata exceeds 2000 bytes in total"):
        OfflineBundle.open(path, BundleLimits(metadata_total=2000))


def test_a_cut_short_bundle_is_refused(good: Path, tmp_path: Path) -> None:
    data = good.read_bytes()
    with tarfile.open(good) as tar:
        last = tar.getmembers()[-1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: last.offset_data + last.size - 1])
    with pytest.raises(OfflineBundleError, match="runs past the end of the file"):
        OfflineBundle.open(cut)


def test_a_damaged_header_is_not_a_quiet_end(good: Path, tmp_path: Path) -> None:
    data = bytearray(good.read_bytes())
    with tarfile.open(good) as tar:
        second = tar.getmembers()[1]
    data[second.offset + 148 : second.offset + 156] = b"garbage!"  # the header checksum
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    with pytest.raises(OfflineBundleError, match="damaged member header"):
        OfflineBundle.open(damaged)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not an uncompressed tar file: empty file"),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 600, "not an uncompressed tar file"),  # zstd magic
        (b"\x1f\x8b" + b"\0" * 600, "not an uncompressed tar file"),  # gzip magic
    ],
)
def test_what_is_not_an_uncompressed_tar_is_refused(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "bundle.tar"
    path.write_bytes(content)
    with pytest.raises(OfflineBundleError, match=problem):
        OfflineBundle.open(path)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(OfflineBundleError, match="no bundle at"):
        OfflineBundle.open(tmp_path / "absent.tar")


# --- refused by verification --------------------------------------------------------------


def test_a_bundle_for_another_vin_is_refused_before_any_check(
    sim: UptaneSimulator, tmp_path: Path
) -> None:
    path = write_bundle(tmp_path / "b.tar", bundle_members(sim, vin="RSTEST00000000009"))
    with pytest.raises(
        OfflineBundleError, match="bundle is for vehicle RSTEST00000000009, this is " + VIN
    ):
        primary(path, sim, tmp_path)


def test_a_director_naming_ecus_this_vehicle_lacks_is_refused_and_not_remembered(
    sim: UptaneSimulator, tmp_path: Path
) -> None:
    """Another vehicle's director metadata verifies (the director's keys are shared), so
    its ECU serials are what binds it: refused, and its versions never become ours."""
    sim.assign("ABS-9", "hw-abs", "brakes/abs-1.4.bin")  # this vehicle has no ABS-9
    path = write_bundle(tmp_path / "b.tar", bundle_members(sim))
    with pytest.raises(OfflineBundleError, match="director assigns ECU ABS-9, which this"):
        primary(path, sim, tmp_path).refresh(KNOWN)
    assert not (tmp_path / "uptane" / "director").exists()


def test_a_missing_target_is_named(sim: UptaneSimulator, tmp_path: Path) -> None:
    members = bundle_members(sim)
    del members[target_member(hashlib.sha256(b"abs firmware").hexdigest())]
    path = write_bundle(tmp_path / "b.tar", members)
    with pytest.raises(OfflineBundleError, match=r"bundle lacks target brakes/abs-1\.4\.bin"):
        primary(path, sim, tmp_path).refresh(KNOWN)


def test_a_target_of_another_length_is_refused(sim: UptaneSimulator, tmp_path: Path) -> None:
    members = bundle_members(sim)
    members[target_member(hashlib.sha256(b"abs firmware").hexdigest())] = b"abs firmware!"
    path = write_bundle(tmp_path / "b.tar", members)
    with pytest.raises(OfflineBundleError, match="has 13 bytes, the verified length is 12"):
        primary(path, sim, tmp_path).refresh(KNOWN)


def test_a_flipped_target_byte_is_refused_while_copying(
    sim: UptaneSimulator, tmp_path: Path
) -> None:
    members = bundle_members(sim)
    members[target_member(hashlib.sha256(b"abs firmware").hexdigest())] = b"abs firmwarE"
    path = write_bundle(tmp_path / "b.tar", members)
    offline = primary(path, sim, tmp_path)
    target = offline.refresh(KNOWN).targets["ABS-1"]
    with pytest.raises(OfflineBundleError, match="does not match the verified sha256"):
        offline.download(target, tmp_path / "abs")
    assert not (tmp_path / "abs").exists() and not (tmp_path / "abs.part").exists()


def test_tampered_metadata_is_the_verification_error(sim: UptaneSimulator, tmp_path: Path) -> None:
    members = bundle_members(sim)
    name = next(n for n in members if n.startswith("director/") and n.endswith(".targets.json"))
    members[name] = members[name].replace(b'"release_counter":3', b'"release_counter":9')
    path = write_bundle(tmp_path / "b.tar", members)
    with pytest.raises(MetadataError, match="director repository") as refused:
        primary(path, sim, tmp_path).refresh(KNOWN)
    assert "\n" not in str(refused.value)


def test_missing_metadata_is_named(sim: UptaneSimulator, tmp_path: Path) -> None:
    members = bundle_members(sim)
    del members["image/timestamp.json"]
    path = write_bundle(tmp_path / "b.tar", members)
    with pytest.raises(DownloadError, match=r"the bundle has no image/timestamp\.json"):
        primary(path, sim, tmp_path).refresh(KNOWN)


def test_expired_metadata_is_refused(good: Path, sim: UptaneSimulator, tmp_path: Path) -> None:
    def later() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=2)

    with pytest.raises(MetadataError, match="ExpiredMetadataError"):
        primary(good, sim, tmp_path, clock=later).refresh(KNOWN)


def test_an_older_bundle_after_a_newer_one_is_a_rollback(
    sim: UptaneSimulator, tmp_path: Path
) -> None:
    old = write_bundle(tmp_path / "old.tar", bundle_members(sim))
    sim.director.refresh_timestamp()
    sim.director.commit()
    new = write_bundle(tmp_path / "new.tar", bundle_members(sim))
    primary(new, sim, tmp_path).refresh(KNOWN)
    with pytest.raises(UptaneError, match="BadVersionNumberError"):
        primary(old, sim, tmp_path).refresh(KNOWN)
