"""The audit trail: filter by actor, action, object and time; export as CSV."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
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
Day = Annotated[str, Query(max_length=10)]
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


@dataclass(frozen=True)
class Filters:
    """The filter form as submitted (shown back as typed), and the query it makes."""

    form: dict[str, str]
    query: audit.AuditQuery
    errors: dict[str, str]


def filters(
    *,
    actor: Field = "",
    action: Field = "",
    object_id: Field = "",
    since: Day = "",
    until: Day = "",
    after_id: Annotated[int, Query(ge=0)] = 0,
) -> Filters:
    """A dependency: the filters of the page and of its CSV export alike."""
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
    form = {"actor": actor, "action": action, "object_id": object_id}
    return Filters({**form, "since": since, "until": until}, query, errors)


FiltersDep = Annotated[Filters, Depends(filters)]


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request, user: Viewer, wanted: FiltersDep) -> HTMLResponse:
    query, errors = wanted.query, wanted.errors
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
        form=wanted.form,
        errors=errors,
        more=len(lines) == records.PAGE,
        active="audit",
    )


@router.get("/audit.csv")
async def audit_csv(request: Request, user: Viewer, wanted: FiltersDep) -> Response:
    """Every match from the first (``after_id`` is ignored), up to :data:`EXPORT_CAP`."""
    if wanted.errors:
        field, message = next(iter(wanted.errors.items()))
        return Response(f"{field}: {message}\n", status_code=422, media_type="text/plain")
    query = dataclasses.replace(wanted.query, after_id=0)
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
