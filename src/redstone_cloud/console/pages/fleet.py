"""The fleet page: vehicles by model and baseline, versions per ECU role, the vehicle list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.csvout import csv_response
from redstone_cloud.console.queries import fleet
from redstone_cloud.console.web import backend_of, render, require
from redstone_cloud.db.types import utcnow

router = APIRouter()

MAX_SILENT_DAYS = 3650


def parse_silent_days(text: str) -> tuple[int | None, str]:
    """The form's "silent for N days" field: (days or None, an error for next to the field)."""
    text = text.strip()
    if not text:
        return None, ""
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_SILENT_DAYS:
        return None, f"Give a whole number of days from 1 to {MAX_SILENT_DAYS}."
    return int(text), ""


@router.get("/", response_class=HTMLResponse)
@router.get("/fleet", response_class=HTMLResponse)
async def fleet_page(
    *,
    request: Request,
    user: Annotated[SignedIn, require()],
    q: Annotated[str, Query(max_length=64)] = "",
    out_of_date: bool = False,
    failing: bool = False,
    silent_days: Annotated[str, Query(max_length=8)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    days, days_error = parse_silent_days(silent_days)
    wanted = fleet.FleetFilter(q, out_of_date, failing, days, page)

    def work(
        session: Session,
    ) -> tuple[list[fleet.ModelCount], dict[str, list[fleet.VersionCount]], fleet.VehiclePage]:
        return (
            fleet.by_model_and_baseline(session),
            fleet.version_distribution(session),
            fleet.vehicles(session, wanted, utcnow()),
        )

    models, versions, vehicles = await in_transaction(backend_of(request), work)
    return render(
        request,
        "fleet.html",
        wanted=wanted,
        silent_days=silent_days,
        days_error=days_error,
        models=models,
        versions=versions,
        vehicles=vehicles,
    )


@router.get("/fleet/versions.csv")
async def versions_csv(request: Request, user: Annotated[SignedIn, require()]) -> Response:
    """The version chart's numbers: one row per ECU role and image."""
    versions = await in_transaction(backend_of(request), fleet.version_distribution)
    return csv_response(
        "fleet-versions.csv",
        ("role", "version", "ecus"),
        ((c.role, c.version, c.ecus) for counts in versions.values() for c in counts),
    )
