"""The backend's only door to :mod:`redstone_agent.uptane` (formats live there, not here).

Translates the vehicle library's errors into HTTP-aware backend errors and
keeps the director's per-vehicle repositories as plain ``{filename: bytes}``
so the database layer stores files, not objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
from redstone_agent.uptane.tufapi import CryptoSigner
from redstone_cloud.errors import BadSignature, InvalidInput

__all__ = [
    "Assignment",
    "CryptoSigner",
    "ImageFields",
    "OnlineKeys",
    "OnlineRepository",
    "Signer",
    "VehicleManifest",
    "check_public_key",
    "ecu_key",
    "generate_signer",
    "keys_outdated",
    "load_signer",
    "new_nonce",
    "parse_repo_file",
    "peek_nonce",
    "private_pem",
    "save_signer",
    "verify_manifest",
]

_VERSIONED = re.compile(r"^(\d+)\.([A-Za-z0-9_.-]+)\.json$")


def ecu_key(data: Mapping[str, Any], where: str = "public key") -> Key:
    """An ECU's registered public key from its stored dict form."""
    try:
        return public_key_from_dict(dict(data))
    except KeyFileError as exc:
        raise InvalidInput(f"{where}: {exc}") from exc


def private_pem(signer: CryptoSigner) -> bytes:
    """A key file's content (PEM PKCS#8) for ``signer``."""
    return bytes(signer.private_bytes)


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


@dataclass(frozen=True)
class OnlineKeys:
    """The online signers at hand: each top-level role's current key, and the keys
    rotations retired (by key id) so a root change can still be signed by the old root."""

    current: Mapping[str, Signer]
    retired: Mapping[str, Signer] = field(default_factory=dict)

    @classmethod
    def single(cls, signer: Signer) -> OnlineKeys:
        """Every role on one key (the development image repository)."""
        return cls(dict.fromkeys(TOP_LEVEL, signer))

    def signer(self, role: str) -> Signer:
        return self.current[role]

    def keyid(self, role: str) -> str:
        return str(self.current[role].public_key.keyid)

    def by_keyid(self, keyid: str) -> Signer | None:
        for signer in self.current.values():
            if signer.public_key.keyid == keyid:
                return signer
        return self.retired.get(keyid)


def keys_outdated(root: bytes, keys: OnlineKeys) -> bool:
    """Whether a published root names, for some top-level role, other keys than the
    current ones (a rotation or the move to per-role keys is due). Unreadable: yes."""
    try:
        roles = json.loads(root)["signed"]["roles"]
        return any(roles[role]["keyids"] != [keys.keyid(role)] for role in TOP_LEVEL)
    except (ValueError, KeyError, TypeError):
        return True


class OnlineRepository:
    """Repositories signed with online keys held by the backend: every vehicle's
    director (one key per top-level role, rotated by ``director rotate-keys``), and
    (development only) the image repository (one key for every role).

    ``keys`` is asked for the signers at every edit, so a rotation made by another
    process is followed: a repository whose root names older keys gets a new root
    version signed by the old and the new root keys, listing the current keys.
    """

    def __init__(
        self, keys: Callable[[], OnlineKeys], expiry: Mapping[str, timedelta] | None = None
    ) -> None:
        self.keys = keys
        self.expiry = dict(expiry or {})
        """Role lifetimes overriding the uptane package's defaults (tests shorten them)."""

    @classmethod
    def from_key_file(cls, path: Path) -> OnlineRepository:
        """One online key for every role, creating it (0600) on first use."""
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                save_signer(generate_signer("ed25519"), path)
            keys = OnlineKeys.single(load_signer(path))
        except UptaneError as exc:
            raise InvalidInput(f"online key {path}: {exc}") from exc
        return cls(lambda: keys)

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
        keys = self.keys()
        if not stored:
            role_keys = {role: RoleKeys([keys.signer(role)]) for role in TOP_LEVEL}
            return Repository.create(name, role_keys, expiry=self.expiry)
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
            repo.signers[role] = [keys.signer(role)]
        _follow_keys(repo, keys)
        return repo


def _follow_keys(repo: Repository, keys: OnlineKeys) -> None:
    """Rotate every top-level role whose key in the repository's root is not the current
    one (TUF root rotation: the next root is signed by the old and the new root keys).

    Root goes first, so the other roles' changes land in the same new root version.
    """
    for role in TOP_LEVEL:
        wanted = keys.signer(role)
        keyids = list(repo.root.roles[role].keyids)
        if keyids == [wanted.public_key.keyid]:
            continue
        old = [k for k in keyids if k != wanted.public_key.keyid]
        if role == "root":
            retired = [s for k in old if (s := keys.by_keyid(k)) is not None]
            if len(retired) < repo.root.roles["root"].threshold:
                raise InvalidInput(
                    f"{repo.name}: its root is signed by key {old[0][:16]}, which is neither"
                    " current nor retired; put the old root key back in keys/retired"
                )
            repo.signers["root"] = [*retired, wanted]
        repo.rotate_key(role, old[0], wanted)
        for extra in old[1:]:
            repo.root.revoke_key(extra, role)
        repo.root.roles[role].threshold = 1


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
