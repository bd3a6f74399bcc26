"""The backend's only door to :mod:`redstone_agent.uptane` (formats live there, not here).

Translates the vehicle library's errors into HTTP-aware backend errors and
keeps the director's per-vehicle repositories as plain ``{filename: bytes}``
so the database layer stores files, not objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets

from redstone_agent.uptane.errors import KeyFileError, ManifestError, UptaneError
from redstone_agent.uptane.keys import (
    Key,
    Signer,
    generate_signer,
    load_signer,
    public_key_from_dict,
    save_signer,
)
from redstone_agent.uptane.manifests import VehicleManifest, new_nonce, verify_vehicle_manifest
from redstone_agent.uptane.repository import TOP_LEVEL, Assignment, Repository, RoleKeys
from redstone_agent.uptane.targetinfo import ImageFields
from redstone_cloud.errors import BadSignature, InvalidInput

__all__ = [
    "Assignment",
    "ImageFields",
    "OnlineRepository",
    "VehicleManifest",
    "check_public_key",
    "ecu_key",
    "new_nonce",
    "parse_repo_file",
    "peek_nonce",
    "verify_manifest",
]

_VERSIONED = re.compile(r"^(\d+)\.([A-Za-z0-9_.-]+)\.json$")


def ecu_key(data: Mapping[str, Any], where: str = "public key") -> Key:
    """An ECU's registered public key from its stored dict form."""
    try:
        return public_key_from_dict(dict(data))
    except KeyFileError as exc:
        raise InvalidInput(f"{where}: {exc}") from exc


def check_public_key(data: Mapping[str, Any], where: str) -> None:
    """Reject a malformed key at registration time rather than at the first manifest."""
    ecu_key(data, where)


def peek_nonce(data: bytes) -> str:
    """The nonce a manifest claims, read *before* verification to find the issued one."""
    try:
        signed = json.loads(data)["signed"]
        nonce = signed["nonce"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadSignature(
            f"vehicle manifest is not a signed envelope with a nonce: {exc}"
        ) from exc
    if not isinstance(nonce, str) or not nonce:
        raise BadSignature("vehicle manifest carries no nonce")
    return nonce


def verify_manifest(
    data: bytes,
    primary_key: Key,
    ecu_keys: Mapping[str, Key],
    *,
    vin: str,
    nonce: str,
    max_bytes: int,
) -> VehicleManifest:
    """Full manifest verification (primary and every ECU signature, VIN, nonce)."""
    try:
        return verify_vehicle_manifest(
            data, primary_key, ecu_keys, expected_nonce=nonce, expected_vin=vin, max_bytes=max_bytes
        )
    except ManifestError as exc:
        raise BadSignature(str(exc)) from exc


class OnlineRepository:
    """Repositories signed with one online key held by the backend: every vehicle's
    director, and (development only) the image repository."""

    def __init__(self, signer: Signer, expiry: Mapping[str, timedelta] | None = None) -> None:
        self.signer = signer
        self.expiry = dict(expiry or {})
        """Role lifetimes overriding the uptane package's defaults (tests shorten them)."""

    @classmethod
    def from_key_file(cls, path: Path) -> OnlineRepository:
        """Load the online key, creating it (0600) on first use."""
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                save_signer(generate_signer("ed25519"), path)
            return cls(load_signer(path))
        except UptaneError as exc:
            raise InvalidInput(f"online key {path}: {exc}") from exc

    def edit(
        self, name: str, stored: Mapping[str, bytes], change: Callable[[Repository], None]
    ) -> dict[str, bytes]:
        """Apply ``change`` to the repository stored as ``{filename: bytes}``, re-sign,
        and return the new published file set."""
        try:
            repo = self._open(name, stored)
            change(repo)
            repo.commit()
            return repo.files()
        except UptaneError as exc:
            raise InvalidInput(f"{name} metadata: {exc}") from exc

    def publish_director(
        self, vin: str, stored: Mapping[str, bytes], assignments: Sequence[Assignment]
    ) -> dict[str, bytes]:
        """Director files for ``vin`` naming exactly ``assignments`` (empty: nothing)."""
        return self.edit(f"director/{vin}", stored, lambda repo: repo.assign(assignments))

    def publish_image(
        self,
        stored: Mapping[str, bytes],
        target: str,
        length: int,
        sha256: str,
        fields: ImageFields,
    ) -> dict[str, bytes]:
        """Development: add one target to the online-signed image repository."""

        def add(repo: Repository) -> None:
            repo.add_target(target, length=length, sha256=sha256, custom=fields.to_custom())

        return self.edit("image", stored, add)

    def _open(self, name: str, stored: Mapping[str, bytes]) -> Repository:
        keys = {role: RoleKeys([self.signer]) for role in TOP_LEVEL}
        if not stored:
            return Repository.create(name, keys, expiry=self.expiry)
        latest: dict[str, tuple[int, bytes]] = {}
        roots: list[tuple[int, bytes]] = []
        for filename, body in stored.items():
            match = _VERSIONED.match(filename)
            if match is None:
                continue
            version, role = int(match.group(1)), match.group(2)
            if role == "root":
                roots.append((version, body))
            elif version > latest.get(role, (0, b""))[0]:
                latest[role] = (version, body)
        roles = {role: body for role, (_, body) in latest.items()}
        roles["root"] = max(roots)[1]
        roles["timestamp"] = stored["timestamp.json"]
        repo = Repository.load(name, roles, [body for _, body in sorted(roots)])
        repo.expiry.update(self.expiry)
        for role in TOP_LEVEL:
            repo.signers[role] = [self.signer]
        return repo


def expires_soon(timestamp: bytes, now: datetime, margin: timedelta) -> bool:
    """Whether a published timestamp expires within ``margin`` (time to re-sign)."""
    try:
        expires = Metadata[Any].from_bytes(timestamp).signed.expires
    except Exception:
        return True
    return bool(expires - now < margin)


def parse_repo_file(name: str, body: bytes, current_root: bytes | None) -> tuple[str, int]:
    """Check an uploaded image-repository file; return its (role, version).

    A root must be signed by the current root's threshold (and its own); other
    top-level roles by the keys the current root names. Delegated roles are
    accepted as signed envelopes (the vehicle verifies the delegation chain).
    """
    try:
        metadata = Metadata[Any].from_bytes(body)
    except Exception as exc:
        raise InvalidInput(f"{name}: not Uptane/TUF metadata: {exc}") from exc
    role = metadata.signed.type if metadata.signed.type != "targets" else _role_of(name)
    version = metadata.signed.version
    expected = f"{version}.{role}.json" if role != "timestamp" else "timestamp.json"
    if name != expected:
        raise InvalidInput(f"{name}: file name must be {expected!r} for this content")
    if current_root is None:
        if role != "root":
            raise InvalidInput("upload 1.root.json before any other image-repository file")
        trusted = metadata.signed
    else:
        trusted = Metadata[Root].from_bytes(current_root).signed
    assert isinstance(trusted, Root)
    try:
        if role in TOP_LEVEL:
            trusted.verify_delegate(role, metadata.signed_bytes, metadata.signatures)
            if role == "root" and metadata.signed is not trusted:
                new_root = metadata.signed
                assert isinstance(new_root, Root)
                new_root.verify_delegate("root", metadata.signed_bytes, metadata.signatures)
        elif not isinstance(metadata.signed, Targets) or not metadata.signatures:
            raise InvalidInput(f"{name}: a delegated role must be signed targets metadata")
    except UnsignedMetadataError as exc:
        raise BadSignature(f"{name}: signatures do not meet the root's threshold: {exc}") from exc
    return role, version


def _role_of(name: str) -> str:
    match = _VERSIONED.match(name)
    if match is None:
        raise InvalidInput(f"{name}: targets files are named '<version>.<role>.json'")
    return match.group(2)
