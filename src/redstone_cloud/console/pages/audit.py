"""The audit trail: filter by actor, action, object and time; export as CSV."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.csvout import csv_response
from redstone_cloud.console.queries import records
from redstone_cloud.console.web import backend_of, render, require
from redstone_cloud.services import audit

router = APIRouter()

Viewer = Annotated[SignedIn, require()]
Field = Annotated[str, Query(max_length=128)]
EXPORT_CAP = 100_000
"""Rows one CSV export holds at most; narrow the filters for more."""


def _day(text: str, field: str, errors: dict[str, str], *, end: bool = False) -> dt.datetime | None:
    """A YYYY-MM-DD date (UTC) as the start of that day, or of the next one for ``until``."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        errors[field] = "Give a date as YYYY-MM-DD."
        return None
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start + dt.timedelta(days=1) if end else start


def _query(
    *, actor: str, action: str, object_id: str, since: str, until: str, after_id: int
) -> tuple[audit.AuditQuery, dict[str, str]]:
    errors: dict[str, str] = {}
    query = audit.AuditQuery(
        actor=actor.strip() or None,
        action=action.strip() or None,
        object_id=object_id.strip() or None,
        since=_day(since, "since", errors),
        until=_day(until, "until", errors, end=True),
        after_id=after_id,
        limit=records.PAGE,
    )
    return query, errors


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    *,
    request: Request,
    user: Viewer,
    actor: Field = "",
    action: Field = "",
    object_id: Field = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    after_id: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    form = {
        "actor": actor,
        "action": action,
        "object_id": object_id,
        "since": since,
        "until": until,
    }
    query, errors = _query(**form, after_id=after_id)
    lines = (
        []
        if errors
        else await in_transaction(backend_of(request), lambda s: records.audit_page(s, query))
    )
    return render(
        request,
        "audit.html",
        status_code=422 if errors else 200,
        lines=lines,
        form=form,
        errors=errors,
        more=len(lines) == records.PAGE,
        active="audit",
    )


@router.get("/audit.csv")
async def audit_csv(
    *,
    request: Request,
    user: Viewer,
    actor: Field = "",
    action: Field = "",
    object_id: Field = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    query, errors = _query(
        actor=actor, action=action, object_id=object_id, since=since, until=until, after_id=0
    )
    if errors:
        field, message = next(iter(errors.items()))
        return Response(f"{field}: {message}\n", status_code=422, media_type="text/plain")
    lines = await in_transaction(
        backend_of(request), lambda s: records.audit_all(s, query, EXPORT_CAP)
    )
    return csv_response(
        "audit.csv",
        ("id", "at", "actor", "action", "object_type", "object_id", "detail"),
        (
            (a.id, a.at.isoformat(), a.actor, a.action, a.object_type, a.object_id, a.detail)
            for a in lines
        ),
    )
