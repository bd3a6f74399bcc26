"""Admin API: a package's or delta's bytes by Uptane target name.

What an operator's tooling needs to sign server-made deltas offline (the image
repository names a delta only after someone with the offline keys has checked
it), without borrowing a vehicle's certificate. Every download is audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from sqlalchemy.orm import Session

from redstone_cloud import inputs
from redstone_cloud.api import schemas
from redstone_cloud.api.common import AdminDep, BackendDep, CappedJsonRoute, in_transaction
from redstone_cloud.api.downloads import RESPONSES, object_response
from redstone_cloud.db.models import Package
from redstone_cloud.services import audit, packages

router = APIRouter(
    prefix="/api/v1", tags=["admin"], route_class=CappedJsonRoute, responses=schemas.ADMIN_ERRORS
)


def _package(session: Session, actor: str, target: str) -> Package:
    inputs.check_target_name(target)
    package = packages.get_package(session, target)
    audit.record(session, actor, "package.download", "package", target, kind=package.kind)
    return package


@router.get("/targets/{target}", responses=RESPONSES)
async def download_target(
    *,
    target: str,
    backend: BackendDep,
    actor: AdminDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A package's or delta's bytes by target name (any package, assigned or not);
    Range, If-Range and If-None-Match as on the device route; audited."""
    package = await in_transaction(backend, _package, actor, target)
    return object_response(backend, package, range_header, if_range, if_none_match)
