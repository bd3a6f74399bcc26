"""The Uptane image repository: metadata signed offline (``redstone-repo``), uploaded, served.

The backend never holds these private keys. It checks each upload against the
current root before publishing it, so a mistaken or malicious upload cannot
replace the repository's trust anchor.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata

from redstone_cloud.db.models import Package, RepoMetadata
from redstone_cloud.errors import Conflict, NotFound
from redstone_cloud.services import audit
from redstone_cloud.uptane_link import ImageFields, OnlineRepository, parse_repo_file


def _latest_root(session: Session) -> RepoMetadata | None:
    return session.scalar(
        select(RepoMetadata)
        .where(RepoMetadata.role == "root")
        .order_by(RepoMetadata.version.desc())
    )


def upload(session: Session, actor: str, name: str, body: bytes) -> RepoMetadata:
    """Publish one metadata file after checking it against the current root."""
    current = _latest_root(session)
    role, version = parse_repo_file(name, body, current.body if current else None)
    if role == "root":
        expected = current.version + 1 if current else 1
        if version != expected:
            raise Conflict(f"{name}: the next root must be version {expected}")
    existing = session.scalar(select(RepoMetadata).where(RepoMetadata.name == name))
    if existing is not None and name != "timestamp.json":
        raise Conflict(f"{name} is already published (metadata files are immutable)")
    if existing is not None:
        if version < existing.version:
            raise Conflict(f"timestamp version {version} is older than {existing.version}")
        existing.version, existing.body = version, body
        row = existing
    else:
        row = RepoMetadata(name=name, role=role, version=version, body=body)
        session.add(row)
    session.flush()
    audit.record(session, actor, "image_repo.publish", "metadata", name, role=role, version=version)
    return row


def publish_online(session: Session, signer: OnlineRepository, package: Package) -> None:
    """Development mode: sign ``package`` into the image repository with the online key."""
    rows = {row.name: row for row in session.scalars(select(RepoMetadata))}
    fields = ImageFields(tuple(package.hardware_ids), package.release_counter)
    files = signer.publish_image(
        {name: row.body for name, row in rows.items()},
        package.target,
        package.length,
        package.sha256,
        fields,
    )
    for name, body in files.items():
        if name == "root.json":
            continue
        role, version = _role_and_version(name, body)
        row = rows.get(name)
        if row is None:
            session.add(RepoMetadata(name=name, role=role, version=version, body=body))
        elif row.body != body:
            row.body, row.version = body, version
    audit.record(session, "image-online-key", "image_repo.publish", "metadata", package.target)


def _role_and_version(name: str, body: bytes) -> tuple[str, int]:
    signed = Metadata[Any].from_bytes(body).signed
    role = "timestamp" if name == "timestamp.json" else name.split(".", 1)[1].removesuffix(".json")
    return role, signed.version


def read(session: Session, name: str) -> bytes:
    """A published file; ``root.json`` is the newest root."""
    if name == "root.json":
        root = _latest_root(session)
        if root is None:
            raise NotFound("image repository has no root yet")
        return root.body
    body = session.scalar(select(RepoMetadata.body).where(RepoMetadata.name == name))
    if body is None:
        raise NotFound(f"image repository has no {name}")
    return body


def signed_target_names(session: Session) -> set[str]:
    """Every target path the newest version of each targets role names (offline-signed)."""
    latest: dict[str, bytes] = {}
    versions: dict[str, int] = {}
    rows = session.execute(
        select(RepoMetadata.role, RepoMetadata.version, RepoMetadata.body).where(
            RepoMetadata.role.not_in(("root", "snapshot", "timestamp"))
        )
    )
    for role, version, body in rows:
        if version > versions.get(role, 0):
            versions[role], latest[role] = version, body
    names: set[str] = set()
    for body in latest.values():
        signed = Metadata[Any].from_bytes(body).signed
        names.update(getattr(signed, "targets", {}))
    return names


def listing(session: Session) -> list[dict[str, object]]:
    rows = session.execute(
        select(
            RepoMetadata.name,
            RepoMetadata.role,
            RepoMetadata.version,
            func.length(RepoMetadata.body),
        ).order_by(RepoMetadata.id)
    )
    return [{"name": n, "role": r, "version": v, "length": size} for n, r, v, size in rows]
