"""Analytics: per campaign (success over time, time to install, failure reasons, download
volume and delta savings) and per fleet (version adoption per ECU role). Every chart's
numbers are on the page as a table and downloadable as CSV."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console import auth
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.csvout import csv_response
from redstone_cloud.console.queries import analytics as queries
from redstone_cloud.console.web import backend_of, render, require
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import NotFound

router = APIRouter()

Viewer = Annotated[SignedIn, require()]


@router.get("/campaigns/{name}/analytics", response_class=HTMLResponse)
async def campaign_analytics(request: Request, name: str, user: Viewer) -> HTMLResponse:
    a = await in_transaction(backend_of(request), lambda s: queries.campaign(s, name))
    path = f"{auth.PREFIX}/campaigns/{quote(name, safe='')}"
    return render(request, "analytics_campaign.html", a=a, path=path, active="campaigns")


@router.get("/campaigns/{name}/analytics/{chart}.csv")
async def campaign_chart_csv(request: Request, name: str, chart: str, user: Viewer) -> Response:
    a = await in_transaction(backend_of(request), lambda s: queries.campaign(s, name))
    table = a.chart(chart)
    if table is None:
        raise NotFound(f"no chart {chart!r}")
    return csv_response(f"{name}-{chart}.csv", table.header, table.rows)


@router.get("/analytics", response_class=HTMLResponse)
async def fleet_analytics(request: Request, user: Viewer) -> HTMLResponse:
    curves = await in_transaction(backend_of(request), lambda s: queries.adoption(s, utcnow()))
    return render(request, "analytics_fleet.html", curves=curves, active="analytics")


@router.get("/analytics/adoption.csv")
async def adoption_csv(request: Request, user: Viewer) -> Response:
    curves = await in_transaction(backend_of(request), lambda s: queries.adoption(s, utcnow()))
    rows = [
        (role, row[0], version, count)
        for role, table in curves.items()
        for row in table.rows
        for version, count in zip(table.header[1:], row[1:], strict=True)
    ]
    return csv_response("version-adoption.csv", ("role", "time", "version", "ecus"), rows)
