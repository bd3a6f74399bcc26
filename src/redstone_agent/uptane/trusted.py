"""Verify one repository's metadata from bytes, without I/O: the TUF client workflow.

python-tuf's ``TrustedMetadataSet`` does the per-role checks (thresholds,
versions, expiry, snapshot pinning, hashes and lengths); this module feeds it
from a :class:`RepositoryMetadata` instead of the network, with a caller-chosen
time, and walks delegations to find a target. The Primary and every Sub run
exactly this code over exactly the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import cast

from tuf.api import exceptions as tuf_errors
from tuf.api.serialization import SerializationError
from tuf.api.serialization.json import CanonicalJSONSerializer
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from redstone_agent.uptane.bundle import RepositoryMetadata, strict_json
from redstone_agent.uptane.errors import BundleError, MetadataError
from redstone_agent.uptane.tufapi import Metadata, Root, Signature, Signed, T, TargetFile, Targets

MAX_ROOT_ROTATIONS = 64
MAX_DELEGATIONS = 32


def root_version(data: bytes) -> int:
    """Version of a root file without verifying it (to order and skip chain entries)."""
    try:
        version = strict_json(data, "root in chain")["signed"]["version"]
    except BundleError as exc:
        raise tuf_errors.RepositoryError(str(exc)) from exc
    except (KeyError, TypeError) as exc:
        raise tuf_errors.RepositoryError(f"unreadable root in chain: {exc!r}") from exc
    if not isinstance(version, int):
        raise tuf_errors.RepositoryError("root version is not an integer")
    return version


@contextmanager
def as_metadata_error(repository: str) -> Iterator[None]:
    """python-tuf's verdicts as our one-line :class:`MetadataError`, naming the repository."""
    try:
        yield
    except tuf_errors.RepositoryError as exc:
        reason = str(exc) or type(exc).__name__
        raise MetadataError(repository, f"{type(exc).__name__}: {reason}") from exc
    except (RecursionError, ValueError, OverflowError, SerializationError) as exc:
        # Hostile bytes that reach python-tuf's or our encoder before any
        # signature is checked (nesting, lone surrogates, non-finite or huge
        # numbers): the same one-line verdict, not a traceback.
        raise MetadataError(repository, f"malformed metadata ({type(exc).__name__})") from exc


def canonical_bytes(signed: Signed) -> bytes:
    """OLPC canonical JSON of ``signed``, byte-identical to python-tuf's, ~10x faster.

    For JSON without backslashes (hence without escapes or control characters),
    ``json.dumps`` with sorted keys and tight separators *is* the canonical
    form; anything with a backslash takes securesystemslib's exact encoder.
    """
    data = signed.to_dict()
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if "\\" in text:
        return CanonicalJSONSerializer().serialize(signed)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\\ud800" in the file) decodes but has no UTF-8
        # form, so nothing can have signed it.
        raise tuf_errors.RepositoryError("metadata holds a lone UTF-16 surrogate") from None


def _load_metadata(
    role: type[T],
    data: bytes,
    delegator: Root | Targets | None = None,
    role_name: str | None = None,
) -> tuple[T, bytes, dict[str, Signature]]:
    """python-tuf's loader, encoding the signed part once and with :func:`canonical_bytes`."""
    md = Metadata[T].from_bytes(data)
    if md.signed.type != role.type:
        raise tuf_errors.RepositoryError(f"Expected '{role.type}', got '{md.signed.type}'")
    signed_bytes = canonical_bytes(md.signed)
    if delegator is not None:
        delegator.verify_delegate(role_name or role.type, signed_bytes, md.signatures)
    return md.signed, signed_bytes, md.signatures


def _new_set(repository: str, trusted_root: bytes, now: datetime) -> TrustedMetadataSet:
    with as_metadata_error(repository):
        trusted = TrustedMetadataSet(trusted_root, EnvelopeType.METADATA)
    trusted.reference_time = now
    # Canonical encoding dominates verification time; same checks, faster encoder.
    trusted._load_data = _load_metadata
    return trusted


def _apply_root_chain(
    repository: str, trusted: TrustedMetadataSet, roots: tuple[bytes, ...]
) -> bytes:
    """Step through newer roots one version at a time; return the newest root's bytes."""
    latest: bytes | None = None
    with as_metadata_error(repository):
        newer = sorted(
            ((root_version(r), r) for r in roots if root_version(r) > trusted.root.version),
            key=lambda pair: pair[0],
        )
        if len(newer) > MAX_ROOT_ROTATIONS:
            raise tuf_errors.RepositoryError(f"more than {MAX_ROOT_ROTATIONS} root rotations")
        for _version, data in newer:
            trusted.update_root(data)
            latest = data
    return latest if latest is not None else b""


class VerifiedRepository:
    """A repository whose top-level metadata verified; delegated roles load on demand."""

    def __init__(
        self,
        name: str,
        trusted: TrustedMetadataSet,
        metadata: RepositoryMetadata,
        new_root: bytes,
    ) -> None:
        self.name = name
        self._trusted = trusted
        self._metadata = metadata
        self.new_root = new_root
        """Bytes of the newest root if the chain rotated it, else ``b""``: persist it."""
        self.used_roles: set[str] = {"timestamp", "snapshot", "targets"}

    @property
    def root(self) -> Root:
        return self._trusted.root

    @property
    def targets(self) -> Targets:
        return self._trusted.targets

    def find_target(self, path: str) -> TargetFile | None:
        """Pre-order depth-first delegation walk, as the TUF specification orders trust."""
        to_visit: list[tuple[str, str]] = [("targets", "root")]
        visited: set[str] = set()
        while to_visit and len(visited) <= MAX_DELEGATIONS:
            role, parent = to_visit.pop()
            if role in visited:
                continue
            targets = self._load(role, parent)
            found = targets.targets.get(path)
            if found is not None:
                return found
            visited.add(role)
            if targets.delegations is None:
                continue
            children: list[tuple[str, str]] = []
            for child, terminating in targets.delegations.get_roles_for_target(path):
                children.append((child, role))
                if terminating:
                    to_visit = []
                    break
            to_visit.extend(reversed(children))
        return None

    def _load(self, role: str, parent: str) -> Targets:
        if self._trusted.contains(role, parent):
            return cast(Targets, self._trusted[role])
        data = self._metadata.roles.get(role)
        if data is None:
            raise MetadataError(self.name, f"metadata for delegated role {role!r} is missing")
        with as_metadata_error(self.name):
            loaded = self._trusted.update_delegated_targets(data, role, parent)
        self.used_roles.add(role)
        return loaded


def _load_previous(
    trusted: TrustedMetadataSet, role: str, previous: RepositoryMetadata | None
) -> None:
    """Seed rollback protection with the previously accepted ``role`` (timestamp/snapshot).

    As in the ngclient Updater these load as *intermediate* metadata: they may
    have expired since; they only bound the versions the new metadata may have.
    """
    data = previous.roles.get(role) if previous else None
    if data is None:
        return
    with suppress(tuf_errors.RepositoryError):
        if role == "timestamp":
            trusted.update_timestamp(data)
        else:
            trusted.update_snapshot(data, trusted=True)


def verify_repository(
    name: str,
    trusted_root: bytes,
    metadata: RepositoryMetadata,
    now: datetime,
    previous: RepositoryMetadata | None = None,
) -> VerifiedRepository:
    """Full TUF verification of root chain, timestamp, snapshot and top-level targets."""
    trusted = _new_set(name, trusted_root, now)
    new_root = _apply_root_chain(name, trusted, metadata.roots)
    for role in ("timestamp", "snapshot", "targets"):
        if role not in metadata.roles:
            raise MetadataError(name, f"{role} metadata is missing")
    _load_previous(trusted, "timestamp", previous)
    # An equal version is the timestamp trusted last time: keep that one.
    with as_metadata_error(name), suppress(tuf_errors.EqualVersionNumberError):
        trusted.update_timestamp(metadata.roles["timestamp"])
    _load_previous(trusted, "snapshot", previous)
    with as_metadata_error(name):
        trusted.update_snapshot(metadata.roles["snapshot"])
        trusted.update_targets(metadata.roles["targets"])
    return VerifiedRepository(name, trusted, metadata, new_root)


def verify_targets_only(
    name: str,
    trusted_root: bytes,
    metadata: RepositoryMetadata,
    now: datetime,
    previous_version: int = 0,
) -> tuple[Targets, bytes]:
    """Partial verification: root chain, then the top-level targets alone.

    Returns the verified targets and the newest root bytes (``b""`` if unchanged).
    """
    trusted = _new_set(name, trusted_root, now)
    new_root = _apply_root_chain(name, trusted, metadata.roots)
    data = metadata.roles.get("targets")
    if data is None:
        raise MetadataError(name, "targets metadata is missing")
    with as_metadata_error(name):
        if trusted.root.is_expired(now):
            raise tuf_errors.ExpiredMetadataError("root is expired")
        md = Metadata[Targets].from_bytes(data)
        if not isinstance(md.signed, Targets):
            raise tuf_errors.RepositoryError(f"expected targets, got {md.signed.type}")
        trusted.root.verify_delegate("targets", md.signed_bytes, md.signatures)
        if md.signed.version < previous_version:
            raise tuf_errors.BadVersionNumberError(
                f"targets version {md.signed.version} is older than trusted {previous_version}"
            )
        if md.signed.is_expired(now):
            raise tuf_errors.ExpiredMetadataError("targets is expired")
    return md.signed, new_root
