"""The vehicle page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.queries import vehicle
from redstone_cloud.console.web import backend_of, render, require
from redstone_cloud.db.types import utcnow

router = APIRouter()


@router.get("/vehicles/{vin}", response_class=HTMLResponse)
async def vehicle_page(
    request: Request, vin: str, user: Annotated[SignedIn, require()]
) -> HTMLResponse:
    view = await in_transaction(
        backend_of(request), lambda s: vehicle.vehicle_view(s, vin, utcnow())
    )
    return render(request, "vehicle.html", v=view)
