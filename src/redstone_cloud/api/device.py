"""Device API: what a vehicle's Master calls, authenticated by its TLS client certificate."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from redstone_cloud import inputs
from redstone_cloud.api import downloads, schemas
from redstone_cloud.api.common import BackendDep, DeviceDep, in_transaction, read_capped
from redstone_cloud.api.errors import validation_message
from redstone_cloud.backend import Backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.models import Package
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import BadSignature, Forbidden, InvalidInput, NotFound
from redstone_cloud.quotas import Budget
from redstone_cloud.services import device, director, imagerepo, packages

router = APIRouter(tags=["device"], responses=schemas.DEVICE_ERRORS)

_JSON_OR_304: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}},
    304: {"description": "not modified (If-None-Match matched the ETag)"},
}

_FILENAME = re.compile(r"^[A-Za-z0-9._-]{1,160}$")


def _poll(backend: Backend, identity: device.Identity) -> bytes:
    now = utcnow()
    view = backend.poll_cache.get(identity.vehicle_id)
    if view is None or view.poll_rev != identity.poll_rev:
        with backend.sessions() as session:
            view = device.poll_view(session, identity, backend.settings.poll_interval_s)
        backend.poll_cache.put(identity.vehicle_id, view)
    body, needs_offer = view.answer(now)
    if not needs_offer:
        return body
    with transaction(backend.sessions) as session:
        device.offer(session, backend.director, identity)
    backend.poll_cache.discard(identity.vehicle_id)
    with backend.sessions() as session:
        fresh = device.identify_by_id(session, identity.vehicle_id)
        view = device.poll_view(session, fresh, backend.settings.poll_interval_s)
    backend.poll_cache.put(identity.vehicle_id, view)
    return view.answer(now)[0]


@router.get("/api/v1/device/poll", responses=_JSON_OR_304)
async def poll(
    identity: DeviceDep,
    backend: BackendDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """What the vehicle should do now. Answers 304 while nothing changed (send If-None-Match)."""
    body = await run_in_threadpool(_poll, backend, identity)
    etag = device.etag_of(body)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if device.etag_matches(etag, if_none_match):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.post("/api/v1/device/nonce")
async def nonce(identity: DeviceDep, backend: BackendDep) -> dict[str, str]:
    """A fresh single-use nonce; the next vehicle manifest must carry it."""
    return {"nonce": await in_transaction(backend, device.issue_nonce, identity)}


@router.post(
    "/api/v1/device/manifest",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
    },
)
async def manifest(identity: DeviceDep, backend: BackendDep, request: Request) -> dict[str, Any]:
    """A signed vehicle manifest (docs/uptane.md). Bad signatures get 422, replays 409."""
    limit = backend.settings.max_manifest_bytes
    data = await read_capped(request, limit)
    try:
        inputs.parse_json(data, "vehicle manifest")
    except InvalidInput as exc:
        raise BadSignature(str(exc)) from exc
    return await in_transaction(backend, device.ingest_manifest, identity, data, limit)


@router.post(
    "/api/v1/device/events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schemas.EventIn.model_json_schema()}},
        }
    },
)
async def events(identity: DeviceDep, backend: BackendDep, request: Request) -> dict[str, Any]:
    """Report an event (download_started, install_failed, rolled_back, consent_given...).

    ``campaign`` must be one the vehicle belongs to (403 otherwise); events count
    against the vehicle's hourly quota (429)."""
    data = await read_capped(request, backend.settings.max_event_bytes)
    backend.quotas.charge(identity.vehicle_id, _event_budget(backend), len(data))
    try:
        event = schemas.EventIn.model_validate(inputs.parse_json(data, "event"))
    except ValidationError as exc:
        raise InvalidInput(f"event: {validation_message(exc.errors())}") from exc
    return await in_transaction(backend, device.record_event, identity, event.model_dump())


@router.post(
    "/api/v1/device/logs",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
)
async def logs(
    identity: DeviceDep,
    backend: BackendDep,
    request: Request,
    campaign: Annotated[str | None, Query(max_length=128)] = None,
    source: Annotated[str, Query(max_length=128)] = "",
) -> dict[str, int]:
    """Upload a log excerpt (UTF-8 text, size-capped). ``campaign`` must be one the
    vehicle belongs to (403 otherwise); logs count against the hourly quota (429)."""
    data = await read_capped(request, backend.settings.max_log_bytes)
    backend.quotas.charge(identity.vehicle_id, _log_budget(backend), len(data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"log is not UTF-8 text: {exc}") from exc
    inputs.check_text(text, "log")
    log_id = await in_transaction(backend, device.store_log, identity, text, campaign, source)
    return {"id": log_id}


def _event_budget(backend: Backend) -> Budget:
    settings = backend.settings
    return Budget("event", settings.device_events_per_hour, settings.device_event_bytes_per_hour)


def _log_budget(backend: Backend) -> Budget:
    settings = backend.settings
    return Budget("log", settings.device_logs_per_hour, settings.device_log_bytes_per_hour)


def _metadata_response(body: bytes, if_none_match: str | None) -> Response:
    etag = device.etag_of(body)
    if device.etag_matches(etag, if_none_match):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


@router.get("/uptane/director/{vin}/{filename}", responses=_JSON_OR_304)
async def director_metadata(
    vin: str,
    filename: str,
    identity: DeviceDep,
    backend: BackendDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The vehicle's director metadata (``root.json``, ``N.root.json``, ``timestamp.json``...)."""
    if vin != identity.vin:
        raise Forbidden("a vehicle may only read its own director metadata")
    if not _FILENAME.match(filename):
        raise InvalidInput("bad metadata file name")

    def work(session: Session) -> bytes:
        device.ensure_director(session, backend.director, identity)
        session.flush()
        return director.read_file(session, identity.vehicle_id, filename)

    return _metadata_response(await in_transaction(backend, work), if_none_match)


@router.get("/uptane/image/{filename}", responses=_JSON_OR_304)
async def image_metadata(
    filename: str,
    identity: DeviceDep,
    backend: BackendDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Image-repository metadata as published (offline-signed)."""
    if not _FILENAME.match(filename):
        raise InvalidInput("bad metadata file name")
    body = await in_transaction(backend, imagerepo.read, filename)
    return _metadata_response(body, if_none_match)


_HASHED = re.compile(r"^(?P<sha256>[0-9a-f]{64})\.(?P<name>.+)$")


def _target_package(
    session: Session, identity: device.Identity, target: str, scope: str
) -> Package:
    """A package by target name, or by its TUF consistent-snapshot name
    ``<sha256>.<name>`` (what tuf.ngclient-based Primaries request); with scope
    ``assignment`` only one the vehicle's director metadata names or one of its ECUs
    runs (403 otherwise)."""
    hashed = _HASHED.match(target)
    name = target if hashed is None else hashed["name"]
    inputs.check_target_name(name)
    package = packages.get_package(session, name)
    if hashed is not None and package.sha256 != hashed["sha256"]:
        raise NotFound(f"{target}: no such version of {package.target}")
    if scope == "assignment" and not director.may_download(session, identity.vehicle_id, package):
        raise Forbidden(f"{package.target} is neither assigned to nor running on this vehicle")
    return package


@router.get("/api/v1/device/targets/{target:path}", responses=downloads.RESPONSES)
async def download(
    *,
    target: str,
    identity: DeviceDep,
    backend: BackendDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A target's bytes; honours Range/If-Range, or redirects to a signed object-store URL."""
    scope = backend.settings.device_download_scope
    package = await in_transaction(backend, _target_package, identity, target, scope)
    return downloads.object_response(backend, package, range_header, if_range, if_none_match)
