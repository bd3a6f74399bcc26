"""A repository workspace on disk (what ``redstone-repo`` edits) and its published form.

Layout (docs/uptane.md)::

    WORKSPACE/repository.json         {"format": 1, "name": "image"|"director",
                                       "expiry_days": {...}, "pending": [roles]}
    WORKSPACE/metadata/root_history/N.root.json
    WORKSPACE/metadata/<role>.json    current version of every other role
    WORKSPACE/keys/<role>/<keyid>.pem private keys kept here (online keys, or all in a lab)
    WORKSPACE/targets/<path>          image repository: the target files themselves

    PUBLISHED/metadata/N.root.json, root.json, V.<role>.json, timestamp.json
    PUBLISHED/targets/<dir>/<sha256>.<basename>
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tuf.api import exceptions as tuf_errors

from redstone_agent.journal import atomic_write
from redstone_agent.uptane.bundle import RepositoryMetadata
from redstone_agent.uptane.errors import RepositoryToolError
from redstone_agent.uptane.keys import load_signer, save_signer
from redstone_agent.uptane.repository import Repository
from redstone_agent.uptane.storage import role_files, root_chain
from redstone_agent.uptane.targetinfo import ImageFields, published_name
from redstone_agent.uptane.tufapi import (
    Metadata,
    Signer,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

FORMAT = 1
_CHUNK = 1 << 20


def _load_repository(meta: Path, info: dict[str, Any]) -> Repository:
    roots = root_chain(meta / "root_history")
    if not roots:
        raise FileNotFoundError(f"no N.root.json in {meta / 'root_history'}")
    roles = {"root": roots[-1], **role_files(meta)}
    repo = Repository.load(str(info["name"]), roles, roots)
    for role, days in info.get("expiry_days", {}).items():
        repo.expiry[role] = timedelta(days=days)
    repo.dirty.update(info.get("pending", []))
    return repo


def _staged_copy(source: Path, directory: Path) -> tuple[Path, int, str]:
    """Copy ``source`` to a fsynced temporary file in ``directory``, hashing on the way.

    Images can be gigabytes: they are streamed, never held in memory. Returns
    (temporary file, length, sha256); the caller renames it into place or unlinks it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".staged.")
    staged = Path(name)
    digest, length = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                length += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged, length, digest.hexdigest()


@dataclass
class Workspace:
    """A repository plus where it lives; ``save()`` after every edit."""

    path: Path
    repository: Repository

    @property
    def metadata_dir(self) -> Path:
        return self.path / "metadata"

    @classmethod
    def create(cls, path: Path, repository: Repository) -> Workspace:
        if (path / "repository.json").exists():
            raise RepositoryToolError(f"{path} already holds a repository")
        workspace = cls(path, repository)
        for role, signers in repository.signers.items():
            for signer in signers:
                workspace.store_key(role, signer)
        workspace.save()
        return workspace

    @classmethod
    def open(cls, path: Path, extra_keys: list[Path] | None = None) -> Workspace:
        """Load metadata and every key in ``keys/`` plus ``extra_keys`` (offline keys)."""
        try:
            info = json.loads((path / "repository.json").read_bytes())
        except (OSError, ValueError) as exc:
            raise RepositoryToolError(f"{path} is not a repository workspace ({exc})") from exc
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise RepositoryToolError(f"{path}: not a format-{FORMAT} repository workspace")
        try:
            repo = _load_repository(path / "metadata", info)
        except (OSError, LookupError, TypeError, ValueError) as exc:
            raise RepositoryToolError(
                f"{path}: workspace is damaged ({type(exc).__name__}: {exc})"
            ) from exc
        workspace = cls(path, repo)
        keyfiles = sorted((path / "keys").glob("*/*.pem")) + list(extra_keys or [])
        for keyfile in keyfiles:
            workspace.attach(load_signer(keyfile))
        return workspace

    def attach(self, signer: Signer) -> list[str]:
        """Offer a key to every role that lists its keyid; returns those roles."""
        roles = []
        for role in self.repository.roles:
            try:
                keyids = self.repository.delegator_of(role).get_delegated_role(role).keyids
            except (RepositoryToolError, ValueError):
                continue
            if signer.public_key.keyid in keyids:
                self.repository.add_signer(role, signer)
                roles.append(role)
        return roles

    def _key_file(self, role: str, keyid: str) -> Path:
        return self.path / "keys" / quote(role, "") / f"{keyid}.pem"

    def store_key(self, role: str, signer: Signer) -> Path:
        """Keep a private key in the workspace (mode 0600)."""
        path = self._key_file(role, signer.public_key.keyid)
        if not path.exists():
            save_signer(signer, path)  # type: ignore[arg-type]
        return path

    def retire_key(self, role: str, keyid: str) -> None:
        """Set a rotated-out key aside (``.pem.retired``): kept for audit, no longer loaded."""
        path = self._key_file(role, keyid)
        if path.exists():
            path.rename(path.with_suffix(".pem.retired"))

    def save(self) -> None:
        repo = self.repository
        info: dict[str, Any] = {
            "format": FORMAT,
            "name": repo.name,
            "expiry_days": {role: delta.days for role, delta in repo.expiry.items()},
            "pending": sorted(repo.dirty),
        }
        atomic_write(self.path / "repository.json", json.dumps(info, indent=2).encode() + b"\n")
        for index, data in enumerate(repo.roots, start=1):
            atomic_write(self.metadata_dir / "root_history" / f"{index}.root.json", data)
        atomic_write(self.metadata_dir / "root.json", repo.to_bytes("root"))  # working copy
        for role, data in repo.role_files().items():
            atomic_write(self.metadata_dir / f"{quote(role, '')}.json", data)

    def target_file(self, path: str) -> Path:
        return self.path / "targets" / path

    def add_image_file(
        self, path: str, source: Path, fields: ImageFields, role: str = "targets"
    ) -> TargetFile:
        """Copy an image into ``targets/`` and list it (pending); a refusal leaves no file."""
        dest = self.target_file(path)
        try:
            staged, length, sha256 = _staged_copy(source, dest.parent)
        except OSError as exc:
            raise RepositoryToolError(f"cannot add {source}: {exc.strerror}") from exc
        try:
            target = self.repository.add_target(
                path, role=role, length=length, sha256=sha256, custom=fields.to_custom()
            )
            staged.replace(dest)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return target

    def publish(self, out: Path) -> list[str]:
        """Write the servable tree; older versions stay for clients mid-update."""
        if self.repository.dirty:
            raise RepositoryToolError("unsigned changes: run 'redstone-repo sign' first")
        written = []
        for name, data in self.repository.files().items():
            atomic_write(out / "metadata" / name, data, mode=0o644)  # any web server serves it
            written.append(f"metadata/{name}")
        for meta in self.repository.roles.values():
            if not isinstance(meta.signed, Targets):
                continue
            for target in meta.signed.targets.values():
                source = self.target_file(target.path)
                if not source.exists():
                    continue  # director targets and externally hosted images
                name = published_name(target.path, target.hashes["sha256"])
                _publish_target(target, source, out / "targets" / name)
                written.append(f"targets/{name}")
        return written


def _publish_target(target: TargetFile, source: Path, dest: Path) -> None:
    """Copy an image to its content-addressed name once, and only if it is the signed one."""
    if dest.exists() and dest.stat().st_size == target.length:
        return  # the name holds the sha256: an earlier publish already wrote it
    staged, length, sha256 = _staged_copy(source, dest.parent)
    if (length, sha256) != (target.length, target.hashes["sha256"]):
        staged.unlink()
        raise RepositoryToolError(
            f"{source} changed after it was added; run 'redstone-repo add-target' again"
        )
    staged.replace(dest)


def read_published(metadata_dir: Path) -> RepositoryMetadata:
    """Read a published repository (``PUBLISHED/metadata``) into a bundle entry.

    Unverified: it follows timestamp → snapshot → versioned role files, the
    verifier then checks every byte.
    """
    try:
        roots = root_chain(metadata_dir)
        timestamp = (metadata_dir / "timestamp.json").read_bytes()
        ts = Metadata[Timestamp].from_bytes(timestamp).signed
        snap_name = f"{ts.snapshot_meta.version}.snapshot.json"
        snapshot = (metadata_dir / snap_name).read_bytes()
        roles = {"timestamp": timestamp, "snapshot": snapshot}
        snap = Metadata[Snapshot].from_bytes(snapshot).signed
        for name, meta in snap.meta.items():
            role = name[: -len(".json")]
            roles[role] = (metadata_dir / f"{meta.version}.{quote(role, '')}.json").read_bytes()
    except (OSError, ValueError, tuf_errors.RepositoryError) as exc:
        raise RepositoryToolError(f"{metadata_dir}: not a published repository ({exc})") from exc
    return RepositoryMetadata(roots, roles)
