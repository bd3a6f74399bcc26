"""Uptane verification over a metadata bundle: full (both repositories) and partial.

This is the I/O-free heart of the trust layer. The Primary calls
:func:`verify_full` on the bundle it just fetched (then forwards that bundle);
a Sub calls :func:`verify_full` or :func:`verify_partial` on the forwarded
bundle with its own trusted roots and clock. Each returns per-ECU
:class:`VerifiedTarget` records that are safe to act on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from redstone_agent.uptane.bundle import DIRECTOR, IMAGE, MetadataBundle
from redstone_agent.uptane.errors import CrossCheckError, MetadataError, UptaneError
from redstone_agent.uptane.targetinfo import DirectorFields, ImageFields, sha256_of
from redstone_agent.uptane.trusted import (
    VerifiedRepository,
    verify_repository,
    verify_targets_only,
)
from redstone_agent.uptane.tufapi import TargetFile, Targets

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Default time source; Subs without a trustworthy RTC pass their own."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class TrustedRoots:
    """The root metadata a verifier trusts (from its own storage, never from the bundle)."""

    director: bytes
    image: bytes | None = None
    """None for an ECU that only does partial verification."""


@dataclass(frozen=True)
class EcuState:
    """What a verifier knows independently about an ECU (its own config and history)."""

    hardware_id: str | None = None
    """The ECU's real hardware id; a director that lies about it is caught."""
    installed_release_counter: int = 0
    """Release counter of the installed image: an assignment may never go below it."""


@dataclass(frozen=True)
class VerifiedTarget:
    """One ECU's verified assignment: the only thing an installer may act on."""

    ecu_serial: str
    filename: str
    length: int
    sha256: str
    hardware_id: str
    release_counter: int
    delta_source_sha256: str | None = None
    custom: Mapping[str, Any] = field(default_factory=dict)
    """The image repository's extra custom fields (e.g. ``version``); empty if partial."""

    def check_data(self, stream: IO[bytes], chunk_size: int = 1 << 20) -> None:
        """Hash a downloaded image while reading it; raise unless length and sha256 match."""
        digest, total = hashlib.sha256(), 0
        while chunk := stream.read(chunk_size):
            total += len(chunk)
            if total > self.length:
                break
            digest.update(chunk)
        if total != self.length or digest.hexdigest() != self.sha256:
            raise UptaneError(f"{self.filename}: content does not match verified length/sha256")


@dataclass(frozen=True)
class VerificationResult:
    """Verified assignments plus roots the verifier must now persist (after rotation)."""

    targets: Mapping[str, VerifiedTarget]
    """ECU serial → verified target (only ECUs the director assigned and we asked for)."""
    new_roots: Mapping[str, bytes]
    """Repository name → newest root bytes, present only when the root was rotated."""
    director_targets_version: int
    image_roles_used: Collection[str] = ()
    """Image-repository roles the walk needed: the minimal set to forward to Subs."""


def _director_entries(
    targets: Targets, wanted: Collection[str] | None
) -> list[tuple[str, TargetFile, DirectorFields]]:
    entries = []
    seen: set[str] = set()
    for target in targets.targets.values():
        try:
            fields = DirectorFields.from_target(target)
        except UptaneError as exc:
            raise MetadataError(DIRECTOR, str(exc)) from exc
        for serial in fields.ecus:
            if serial in seen:
                raise CrossCheckError(serial, "director assigns more than one target")
            seen.add(serial)
            if wanted is None or serial in wanted:
                entries.append((serial, target, fields))
    return entries


def _check_director_claims(
    serial: str, target: TargetFile, fields: DirectorFields, known: EcuState
) -> str:
    hardware_id = fields.ecus[serial]
    if known.hardware_id is not None and hardware_id != known.hardware_id:
        raise CrossCheckError(
            serial, f"director says hardware id {hardware_id!r}, ECU is {known.hardware_id!r}"
        )
    if fields.release_counter < known.installed_release_counter:
        raise CrossCheckError(
            serial,
            f"release counter {fields.release_counter} of {target.path} is below the installed "
            f"{known.installed_release_counter} (rollback)",
        )
    return hardware_id


def _cross_check(
    serial: str,
    director: TargetFile,
    fields: DirectorFields,
    hardware_id: str,
    image: VerifiedRepository,
) -> VerifiedTarget:
    found = image.find_target(director.path)
    if found is None:
        raise CrossCheckError(serial, f"image repository has no target {director.path!r}")
    try:
        image_fields = ImageFields.from_target(found)
        image_sha = sha256_of(found, "image repository")
    except UptaneError as exc:
        raise CrossCheckError(serial, str(exc)) from exc
    if found.length != director.length:
        raise CrossCheckError(
            serial, f"{director.path}: director length {director.length} != image {found.length}"
        )
    common = director.hashes.keys() & found.hashes.keys()
    if "sha256" not in common or any(director.hashes[a] != found.hashes[a] for a in common):
        raise CrossCheckError(serial, f"{director.path}: director and image hashes differ")
    if hardware_id not in image_fields.hardware_ids:
        raise CrossCheckError(
            serial, f"{director.path} is not built for hardware id {hardware_id!r}"
        )
    if image_fields.release_counter != fields.release_counter:
        raise CrossCheckError(
            serial,
            f"{director.path}: director release counter {fields.release_counter} != "
            f"image {image_fields.release_counter}",
        )
    if image_fields.delta_source_sha256 != fields.delta_source_sha256:
        raise CrossCheckError(serial, f"{director.path}: delta source hashes differ")
    return VerifiedTarget(
        serial,
        director.path,
        found.length,
        image_sha,
        hardware_id,
        image_fields.release_counter,
        image_fields.delta_source_sha256,
        dict(image_fields.extra),
    )


def verify_full(
    bundle: MetadataBundle,
    roots: TrustedRoots,
    *,
    ecus: Mapping[str, EcuState] | None = None,
    only_known_ecus: bool = False,
    clock: Clock = system_clock,
    previous: MetadataBundle | None = None,
) -> VerificationResult:
    """Verify director and image repository and cross-check each assigned ECU.

    ``ecus`` gives independent knowledge per serial (hardware id, installed
    release counter). With ``only_known_ecus`` (a Sub passes its own serial)
    assignments for other ECUs are ignored rather than checked.
    """
    if roots.image is None:
        raise UptaneError("full verification needs a trusted image-repository root")
    now = clock()
    known = dict(ecus or {})
    prev = previous.repositories if previous else {}
    director = verify_repository(
        DIRECTOR, roots.director, bundle.repository(DIRECTOR), now, prev.get(DIRECTOR)
    )
    image = verify_repository(IMAGE, roots.image, bundle.repository(IMAGE), now, prev.get(IMAGE))
    wanted = known.keys() if only_known_ecus else None
    verified: dict[str, VerifiedTarget] = {}
    for serial, target, fields in _director_entries(director.targets, wanted):
        state = known.get(serial, EcuState())
        hardware_id = _check_director_claims(serial, target, fields, state)
        verified[serial] = _cross_check(serial, target, fields, hardware_id, image)
    new_roots = {n: r.new_root for n, r in ((DIRECTOR, director), (IMAGE, image)) if r.new_root}
    return VerificationResult(verified, new_roots, director.targets.version, image.used_roles)


def verify_partial(
    bundle: MetadataBundle,
    director_root: bytes,
    ecu_serial: str,
    *,
    ecu: EcuState | None = None,
    clock: Clock = system_clock,
    previous_targets_version: int = 0,
) -> VerificationResult:
    """Uptane partial verification: the director's targets, signed and fresh, for one ECU."""
    now = clock()
    targets, new_root = verify_targets_only(
        DIRECTOR, director_root, bundle.repository(DIRECTOR), now, previous_targets_version
    )
    state = ecu or EcuState()
    verified: dict[str, VerifiedTarget] = {}
    for serial, target, fields in _director_entries(targets, {ecu_serial}):
        hardware_id = _check_director_claims(serial, target, fields, state)
        verified[serial] = VerifiedTarget(
            serial,
            target.path,
            target.length,
            sha256_of(target, "director"),
            hardware_id,
            fields.release_counter,
            fields.delta_source_sha256,
        )
    return VerificationResult(verified, {DIRECTOR: new_root} if new_root else {}, targets.version)
