"""The audit trail: append-only (database triggers refuse UPDATE and DELETE)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from redstone_cloud.db.models import AuditRecord


def record(
    session: Session, actor: str, action: str, object_type: str, object_id: object, **detail: Any
) -> AuditRecord:
    """Append one record in the caller's transaction: it exists iff the change does.

    Columns have fixed widths (PostgreSQL refuses longer text); a longer actor,
    action or object id is cut to fit and kept whole in ``detail`` under ``full``.
    """
    fields = {"actor": (actor, 128), "action": (action, 64), "object_id": (str(object_id), 128)}
    cut = {name: value for name, (value, width) in fields.items() if len(value) > width}
    if cut:
        detail = {**detail, "full": cut}
    entry = AuditRecord(
        actor=actor[:128],
        action=action[:64],
        object_type=object_type,
        object_id=str(object_id)[:128],
        detail=detail,
    )
    session.add(entry)
    return entry


@dataclass(frozen=True)
class AuditQuery:
    """Filters for reading the trail; all optional, combined with AND."""

    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    after_id: int = 0
    limit: int = 100

    def statement(self) -> Select[AuditRecord]:
        stmt = select(AuditRecord).where(AuditRecord.id > self.after_id)
        for column, value in (
            (AuditRecord.actor, self.actor),
            (AuditRecord.action, self.action),
            (AuditRecord.object_type, self.object_type),
            (AuditRecord.object_id, self.object_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if self.since is not None:
            stmt = stmt.where(AuditRecord.at >= self.since)
        if self.until is not None:
            stmt = stmt.where(AuditRecord.at < self.until)
        return stmt.order_by(AuditRecord.id)


def search(session: Session, query: AuditQuery) -> list[AuditRecord]:
    """One page of matching records in append order (page on with ``after_id``)."""
    return list(session.scalars(query.statement().limit(max(1, min(query.limit, 1000)))))


def as_dict(entry: AuditRecord) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "detail": entry.detail,
    }


def export_jsonl(session: Session, query: AuditQuery) -> Iterator[str]:
    """Every matching record as JSON Lines, streamed in pages (exports can be large)."""
    after = query.after_id
    while True:
        page = search(session, AuditQuery(**{**query.__dict__, "after_id": after, "limit": 500}))
        for entry in page:
            yield json.dumps(as_dict(entry), sort_keys=True) + "\n"
        if len(page) < 500:
            return
        after = page[-1].id
