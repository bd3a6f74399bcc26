"""Vehicle logs: search by vehicle, campaign and text, and a live tail of new lines."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console import auth, live
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.queries import records
from redstone_cloud.console.web import backend_of, render, require, templates

router = APIRouter()

Viewer = Annotated[SignedIn, require()]
Vin = Annotated[str, Query(max_length=17)]
Name = Annotated[str, Query(max_length=128)]
Text = Annotated[str, Query(max_length=200)]


@router.get("/logs", response_class=HTMLResponse)
async def logs_page(
    request: Request, user: Viewer, vin: Vin = "", campaign: Name = "", q: Text = ""
) -> HTMLResponse:
    wanted = records.LogFilter(vin.strip().upper(), campaign.strip(), q)
    lines = await in_transaction(backend_of(request), lambda s: records.logs(s, wanted))
    return render(
        request,
        "logs.html",
        wanted=wanted,
        lines=lines,
        newest=lines[0].id if lines else 0,
        active="logs",
    )


@router.get("/logs/live")
async def logs_live(
    *,
    request: Request,
    user: Viewer,
    vin: Vin = "",
    campaign: Name = "",
    q: Text = "",
    after: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """``rows``: the rendered table rows of lines newer than any sent, newest first."""
    backend = backend_of(request)
    wanted = records.LogFilter(vin.strip().upper(), campaign.strip(), q)
    await in_transaction(backend, lambda s: records.logs(s, wanted, after))  # 404 first
    newest = after

    async def tick() -> list[live.Message]:
        nonlocal newest
        lines = await in_transaction(backend, lambda s: records.logs(s, wanted, newest))
        if not lines:
            return []
        newest = lines[0].id
        rows = templates.get_template("_log_rows.html").render(prefix=auth.PREFIX, lines=lines)
        return [("rows", rows)]

    return live.respond(request, backend, tick)
