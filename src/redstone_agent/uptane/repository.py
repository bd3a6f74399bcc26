"""An in-memory Uptane repository (image repository or director): edit, sign, publish.

I/O free: metadata lives in :class:`Metadata` objects, keys arrive as
:class:`Signer` objects, and :meth:`Repository.files` returns the published
file set as ``{name: bytes}``. The CLI (:mod:`redstone_agent.uptane.workspace`)
and the cloud backend persist those bytes where they like.

Every edit marks roles *dirty*; :meth:`Repository.commit` then re-signs them
with a bumped version, and refreshes snapshot and timestamp so that a client
always sees one consistent state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.serialization.json import JSONSerializer

from redstone_agent.uptane.errors import RepositoryToolError
from redstone_agent.uptane.targetinfo import DirectorFields, ImageFields
from redstone_agent.uptane.tufapi import (
    DelegatedRole,
    Delegations,
    Key,
    Metadata,
    MetaFile,
    Root,
    Signer,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")
Clock = Callable[[], datetime]

_SERIALIZER = JSONSerializer(compact=True)

DEFAULT_EXPIRY: dict[str, timedelta] = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
    "delegated": timedelta(days=90),
}


def utc_now() -> datetime:
    """The default clock: the system's UTC time."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class RoleKeys:
    """The keys a role is created with: signers at hand, and public-only keys held elsewhere."""

    signers: Sequence[Signer]
    threshold: int = 1
    public_keys: Sequence[Key] = ()
    """Keys whose private half stays with someone else (a supplier, an HSM)."""

    def all_keys(self) -> list[Key]:
        return [*self.public_keys, *(s.public_key for s in self.signers)]

    def check_threshold(self, role: str) -> None:
        """Refuse a threshold no set of these keys can ever meet (or one of zero)."""
        if self.threshold < 1 or self.threshold > len(self.all_keys()):
            raise RepositoryToolError(
                f"{role} threshold {self.threshold} needs at least as many keys"
                f" ({len(self.all_keys())} given)"
            )


@dataclass(frozen=True)
class Assignment:
    """One ECU's assignment as the director signs it (what the backend decides)."""

    ecu_serial: str
    hardware_id: str
    filename: str
    length: int
    sha256: str
    release_counter: int
    delta_source_sha256: str | None = None


def _expiry_key(role: str) -> str:
    return role if role in TOP_LEVEL else "delegated"


@dataclass
class Repository:
    """Metadata of one repository plus whatever signers are at hand right now."""

    name: str
    roles: dict[str, Metadata[Any]]
    roots: list[bytes]
    """Every published root version in order, as signed bytes (clients walk the chain)."""
    signers: dict[str, list[Signer]] = field(default_factory=dict)
    expiry: dict[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_EXPIRY))
    clock: Clock = utc_now
    dirty: set[str] = field(default_factory=set)

    # ---------------------------------------------------------------- creation
    @classmethod
    def create(
        cls,
        name: str,
        keys: Mapping[str, RoleKeys],
        *,
        expiry: Mapping[str, timedelta] | None = None,
        clock: Clock = utc_now,
    ) -> Repository:
        """A new repository (version 1 of every top-level role) signed with ``keys``."""
        missing = [role for role in TOP_LEVEL if role not in keys]
        if missing:
            raise RepositoryToolError(f"{name}: no keys given for {', '.join(missing)}")
        repo = cls(name, {}, [], clock=clock)
        repo.expiry.update(expiry or {})
        root = Root(consistent_snapshot=True, expires=repo._expires("root"))
        for role, role_keys in keys.items():
            role_keys.check_threshold(f"{name}: {role}")
            for key in role_keys.all_keys():
                root.add_key(key, role)
            root.roles[role].threshold = role_keys.threshold
            repo.signers[role] = list(role_keys.signers)
        repo.roles["root"] = Metadata(root)
        repo.roles["targets"] = Metadata(Targets(expires=repo._expires("targets")))
        repo.roles["snapshot"] = Metadata(Snapshot(expires=repo._expires("snapshot")))
        repo.roles["timestamp"] = Metadata(Timestamp(expires=repo._expires("timestamp")))
        repo._sign("root")
        repo.roots.append(repo.to_bytes("root"))
        for role in ("targets", "snapshot", "timestamp"):
            repo._sign(role)
        repo._refresh_snapshot(bump=False)
        repo._refresh_timestamp(bump=False)
        return repo

    @classmethod
    def load(
        cls,
        name: str,
        roles: Mapping[str, bytes],
        roots: Sequence[bytes],
        *,
        clock: Clock = utc_now,
    ) -> Repository:
        """Rebuild from stored metadata bytes (current role files plus the root chain)."""
        try:
            parsed = {role: Metadata[Any].from_bytes(data) for role, data in roles.items()}
        except Exception as exc:
            raise RepositoryToolError(f"{name}: stored metadata is unreadable: {exc}") from exc
        return cls(name, parsed, list(roots), clock=clock)

    # ------------------------------------------------------------------ access
    @property
    def root(self) -> Root:
        return cast(Root, self.roles["root"].signed)

    def targets_role(self, role: str = "targets") -> Targets:
        try:
            signed = self.roles[role].signed
        except KeyError:
            raise RepositoryToolError(f"{self.name}: no targets role named {role!r}") from None
        if not isinstance(signed, Targets):
            raise RepositoryToolError(f"{self.name}: {role!r} is not a targets role")
        return signed

    def find_target(self, path: str) -> TargetFile:
        """The target named ``path`` in whichever targets role lists it (unverified)."""
        for meta in self.roles.values():
            if isinstance(meta.signed, Targets) and path in meta.signed.targets:
                return meta.signed.targets[path]
        raise RepositoryToolError(f"{self.name} repository has no target {path!r}")

    def to_bytes(self, role: str) -> bytes:
        return self.roles[role].to_bytes(_SERIALIZER)

    def add_signer(self, role: str, signer: Signer) -> None:
        """Make a key available for signing ``role`` (e.g. an offline key brought in)."""
        self.signers.setdefault(role, []).append(signer)

    def delegator_of(self, role: str) -> Root | Targets:
        if role in TOP_LEVEL:
            return self.root
        for meta in self.roles.values():
            signed = meta.signed
            delegations = signed.delegations if isinstance(signed, Targets) else None
            if delegations is not None and role in (delegations.roles or {}):
                return cast(Targets, signed)
        raise RepositoryToolError(f"{self.name}: no role delegates to {role!r}")

    # ----------------------------------------------------------------- editing
    def add_target(
        self,
        path: str,
        data: bytes | None = None,
        *,
        role: str = "targets",
        length: int | None = None,
        sha256: str | None = None,
        custom: Mapping[str, Any] | None = None,
    ) -> TargetFile:
        """Add or replace a target, from its bytes or from a known length and sha256."""
        if data is not None:
            length, sha256 = len(data), hashlib.sha256(data).hexdigest()
        if length is None or sha256 is None:
            raise RepositoryToolError("add_target needs the data or both length and sha256")
        targets = self.targets_role(role)
        delegator = self.delegator_of(role)
        if isinstance(delegator, Targets) and delegator.delegations is not None:
            delegated = (delegator.delegations.roles or {})[role]
            if not delegated.is_delegated_path(path):
                raise RepositoryToolError(f"{role} is not trusted for {path!r} (see its paths)")
        fields = {"custom": dict(custom)} if custom else {}
        target = TargetFile(length, {"sha256": sha256}, path, fields)
        targets.targets[path] = target
        self.dirty.add(role)
        return target

    def add_image(
        self,
        path: str,
        data: bytes,
        fields: ImageFields,
        role: str = "targets",
    ) -> TargetFile:
        """Add an ECU image with its hardware ids and release counter."""
        return self.add_target(path, data, role=role, custom=fields.to_custom())

    def remove_target(self, path: str, role: str = "targets") -> None:
        targets = self.targets_role(role)
        if targets.targets.pop(path, None) is None:
            raise RepositoryToolError(f"{self.name}: {role} has no target {path!r}")
        self.dirty.add(role)

    def delegate(
        self,
        name: str,
        keys: RoleKeys,
        paths: Sequence[str],
        *,
        parent: str = "targets",
        terminating: bool = True,
    ) -> None:
        """Delegate ``paths`` (glob patterns) to a supplier role signed by ``keys``."""
        if name in self.roles:
            raise RepositoryToolError(f"{self.name}: role {name!r} already exists")
        keys.check_threshold(name)  # before anything changes: a refusal leaves no trace
        parent_md = self.targets_role(parent)
        if parent_md.delegations is None:
            parent_md.delegations = Delegations(keys={}, roles={})
        role = DelegatedRole(name, [], keys.threshold, terminating, list(paths))
        assert parent_md.delegations.roles is not None
        parent_md.delegations.roles[name] = role
        for key in keys.all_keys():
            parent_md.add_key(key, name)
        self.roles[name] = Metadata(Targets(expires=self._expires(name)))
        self.signers[name] = list(keys.signers)
        self.dirty.update({name, parent})

    def assign(self, assignments: Iterable[Assignment]) -> None:
        """Director: replace the vehicle's targets with exactly these ECU assignments.

        ECUs that get the same file share one target entry; they must then agree
        on its length, hash, release counter and delta source.
        """
        grouped: dict[str, list[Assignment]] = {}
        for item in assignments:
            grouped.setdefault(item.filename, []).append(item)
        targets = self.targets_role()
        targets.targets.clear()
        for filename, items in grouped.items():
            first = items[0]
            shape = (first.length, first.sha256, first.release_counter, first.delta_source_sha256)
            for other in items[1:]:
                if (
                    other.length,
                    other.sha256,
                    other.release_counter,
                    other.delta_source_sha256,
                ) != shape:
                    raise RepositoryToolError(f"conflicting assignments for {filename!r}")
            fields = DirectorFields(
                {i.ecu_serial: i.hardware_id for i in items},
                first.release_counter,
                first.delta_source_sha256,
            )
            self.add_target(
                filename, length=first.length, sha256=first.sha256, custom=fields.to_custom()
            )
        self.dirty.add("targets")

    def set_threshold(self, role: str, threshold: int) -> None:
        delegator = self.delegator_of(role)
        role_obj = delegator.get_delegated_role(role)
        if threshold < 1 or threshold > len(role_obj.keyids):
            raise RepositoryToolError(f"{role}: threshold must be 1..{len(role_obj.keyids)}")
        role_obj.threshold = threshold
        self.dirty.add("root" if isinstance(delegator, Root) else self._name_of(delegator))

    def rotate_key(self, role: str, old_keyid: str, new_signer: Signer) -> None:
        """Replace one key of ``role``; a root change is signed by old and new root keys."""
        delegator = self.delegator_of(role)
        if old_keyid not in delegator.get_delegated_role(role).keyids:
            raise RepositoryToolError(f"{role} has no key {old_keyid}")
        delegator.add_key(new_signer.public_key, role)
        delegator.revoke_key(old_keyid, role)
        kept = [s for s in self.signers.get(role, []) if s.public_key.keyid != old_keyid]
        if role == "root":
            # The outgoing root key must still sign the new root (old threshold).
            retired = [s for s in self.signers.get(role, []) if s.public_key.keyid == old_keyid]
            self.signers.setdefault("root-old", []).extend(retired)
        self.signers[role] = [*kept, new_signer]
        self.dirty.add("root" if isinstance(delegator, Root) else self._name_of(delegator))
        self.dirty.add(role)

    def _name_of(self, signed: Targets) -> str:
        for role, meta in self.roles.items():
            if meta.signed is signed:
                return role
        raise RepositoryToolError(f"{self.name}: unknown targets object")

    # ----------------------------------------------------------------- signing
    def commit(self) -> list[str]:
        """Re-sign every changed role (new version), then snapshot and timestamp."""
        changed = sorted(self.dirty - {"root", "snapshot", "timestamp"})
        self._require_signers([*changed, "snapshot", "timestamp"])
        if "root" in self.dirty:
            self._sign_new_root()
        for role in changed:
            self._sign(role, bump=True)
        self._refresh_snapshot(bump=True)
        self._refresh_timestamp(bump=True)
        committed = (["root"] if "root" in self.dirty else []) + changed
        self.dirty.clear()
        return committed

    def _require_signers(self, roles: Iterable[str]) -> None:
        """Refuse before changing anything if some role cannot reach its threshold."""
        for role in roles:
            delegated = self.delegator_of(role).get_delegated_role(role)
            present = {s.public_key.keyid for s in self.signers.get(role, [])}
            have = len(present & set(delegated.keyids))
            if have < delegated.threshold:
                raise RepositoryToolError(
                    f"{self.name}: {role} needs {delegated.threshold} signing key(s), "
                    f"{have} available; pass the missing key(s)"
                )

    def refresh_timestamp(self) -> None:
        """Only re-sign the timestamp with a fresh expiry (the online heartbeat)."""
        self._refresh_timestamp(bump=True)

    def _expires(self, role: str) -> datetime:
        return (self.clock() + self.expiry[_expiry_key(role)]).replace(microsecond=0)

    def _sign(self, role: str, bump: bool = False) -> None:
        meta = self.roles[role]
        if bump:
            meta.signed.version += 1
        meta.signed.expires = self._expires(role)
        meta.signatures.clear()
        delegator = self.delegator_of(role)
        authorised = set(delegator.get_delegated_role(role).keyids)
        for signer in self.signers.get(role, []):
            if signer.public_key.keyid in authorised:
                meta.sign(signer, append=True)
        try:
            delegator.verify_delegate(role, meta.signed_bytes, meta.signatures)
        except UnsignedMetadataError as exc:
            raise RepositoryToolError(
                f"{self.name}: not enough keys to sign {role} ({exc}); add the missing keys"
            ) from exc

    def _sign_new_root(self) -> None:
        """New root version: must satisfy the old root's threshold *and* its own."""
        old = Metadata[Root].from_bytes(self.roots[-1]).signed
        meta = self.roles["root"]
        meta.signed.version = old.version + 1
        meta.signed.expires = self._expires("root")
        meta.signatures.clear()
        keyids = set(old.roles["root"].keyids) | set(self.root.roles["root"].keyids)
        for signer in self.signers.get("root", []) + self.signers.get("root-old", []):
            if signer.public_key.keyid in keyids and signer.public_key.keyid not in meta.signatures:
                meta.sign(signer, append=True)
        try:
            old.verify_delegate("root", meta.signed_bytes, meta.signatures)
            self.root.verify_delegate("root", meta.signed_bytes, meta.signatures)
        except UnsignedMetadataError as exc:
            raise RepositoryToolError(
                f"{self.name}: new root needs thresholds of old and new root keys ({exc})"
            ) from exc
        self.roots.append(self.to_bytes("root"))

    def _refresh_snapshot(self, bump: bool) -> None:
        snapshot = cast(Snapshot, self.roles["snapshot"].signed)
        snapshot.meta = {
            f"{role}.json": MetaFile(meta.signed.version, length=len(self.to_bytes(role)))
            for role, meta in self.roles.items()
            if role not in {"root", "snapshot", "timestamp"}
        }
        self._sign("snapshot", bump)

    def _refresh_timestamp(self, bump: bool) -> None:
        data = self.to_bytes("snapshot")
        timestamp = cast(Timestamp, self.roles["timestamp"].signed)
        timestamp.snapshot_meta = MetaFile(
            self.roles["snapshot"].signed.version,
            length=len(data),
            hashes={"sha256": hashlib.sha256(data).hexdigest()},
        )
        self._sign("timestamp", bump)

    # -------------------------------------------------------------- publishing
    def files(self) -> dict[str, bytes]:
        """The published file set (consistent snapshots), relative names → bytes."""
        out: dict[str, bytes] = {}
        for index, data in enumerate(self.roots, start=1):
            out[f"{index}.root.json"] = data
        out["root.json"] = self.roots[-1]
        for role, meta in self.roles.items():
            if role in {"root", "timestamp"}:
                continue
            data = self.to_bytes(role)
            out[f"{meta.signed.version}.{quote(role, '')}.json"] = data
        out["timestamp.json"] = self.to_bytes("timestamp")
        return out

    def role_files(self) -> dict[str, bytes]:
        """Current bytes of every role except root (see :attr:`roots`)."""
        return {role: self.to_bytes(role) for role in self.roles if role != "root"}
