"""Admin API: a vehicle's current update as an offline bundle (docs/bundle.md).

The same file ``redstone-cloud bundle`` writes, streamed: the database work
(publishing the vehicle's director metadata, choosing the files) is done in one
transaction before the first byte, so a refused bundle is an ordinary error
answer and ``Content-Length`` is exact.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from redstone_cloud.api import schemas
from redstone_cloud.api.common import AdminDep, BackendDep, CappedJsonRoute, in_transaction
from redstone_cloud.services import bundle

router = APIRouter(
    prefix="/api/v1", tags=["admin"], route_class=CappedJsonRoute, responses=schemas.ADMIN_ERRORS
)

_TAR = {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the bundle: an uncompressed tar file", "content": _TAR}
}


@router.get("/vehicles/{vin}/bundle", response_class=StreamingResponse, responses=RESPONSES)
async def vehicle_bundle(
    vin: str,
    backend: BackendDep,
    actor: AdminDep,
    campaign: Annotated[str | None, Query(max_length=128)] = None,
) -> StreamingResponse:
    """An offline bundle of the vehicle's current assignment, for USB install: publishes
    its director metadata as its first poll would; 409 without a running assignment
    (or in another ``campaign``). Audited as ``vehicle.bundle``."""

    def work(session: Session) -> bundle.BundlePlan:
        return bundle.prepare(session, backend.director, vin, actor=actor, campaign=campaign)

    plan = await in_transaction(backend, work)
    headers = {
        "Content-Length": str(plan.size()),
        "Content-Disposition": f'attachment; filename="{plan.filename}"',
    }
    return StreamingResponse(
        bundle.stream(plan, backend.store), media_type="application/x-tar", headers=headers
    )
