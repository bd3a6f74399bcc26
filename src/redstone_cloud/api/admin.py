"""Admin API: models, vehicles, packages, campaigns, image repository, PKI, audit, logs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime
from sqlalchemy import select
from sqlalchemy.orm import Session

from redstone_cloud.api import schemas
from redstone_cloud.api.common import (
    AdminDep,
    BackendDep,
    CappedJsonRoute,
    in_transaction,
    read_capped,
    spool_capped,
)
from redstone_cloud.db.models import (
    Baseline,
    CertificateAuthority,
    DeviceCertificate,
    Package,
    Vehicle,
    VehicleModel,
)
from redstone_cloud.inputs import DB_INT_MAX
from redstone_cloud.services import (
    audit,
    campaigns,
    deltas,
    device,
    imagerepo,
    inventory,
    packages,
    pki,
)

router = APIRouter(
    prefix="/api/v1", tags=["admin"], route_class=CappedJsonRoute, responses=schemas.ADMIN_ERRORS
)


# --- models and baselines ------------------------------------------------------------------------


def _model_out(model: VehicleModel) -> schemas.ModelOut:
    return schemas.ModelOut(
        name=model.name,
        description=model.description,
        ecus=[
            schemas.EcuSlotIn(role=e.role, hardware_id=e.hardware_id, kind=e.kind)
            for e in model.ecus
        ],
    )


@router.post("/models", status_code=201, response_model=schemas.ModelOut)
async def create_model(
    body: schemas.ModelIn, backend: BackendDep, actor: AdminDep
) -> schemas.ModelOut:
    """Define a vehicle model and its ECU topology (exactly one primary)."""

    def work(session: Session) -> schemas.ModelOut:
        slots = [inventory.EcuSlot(e.role, e.hardware_id, e.kind) for e in body.ecus]
        return _model_out(
            inventory.create_model(session, actor, body.name, body.description, slots)
        )

    return await in_transaction(backend, work)


@router.get("/models", response_model=list[schemas.ModelOut])
async def list_models(backend: BackendDep, actor: AdminDep) -> list[schemas.ModelOut]:
    return await in_transaction(
        backend, lambda s: [_model_out(m) for m in inventory.list_models(s)]
    )


@router.get("/models/{name}", response_model=schemas.ModelOut)
async def get_model(name: str, backend: BackendDep, actor: AdminDep) -> schemas.ModelOut:
    return await in_transaction(backend, lambda s: _model_out(inventory.get_model(s, name)))


def _baseline_out(session: Session, baseline: Baseline) -> schemas.BaselineOut:
    model = session.get_one(VehicleModel, baseline.model_id)
    return schemas.BaselineOut(
        name=baseline.name,
        model=model.name,
        items={item.hardware_id: item.package.target for item in baseline.items},
    )


@router.post("/models/{name}/baselines", status_code=201, response_model=schemas.BaselineOut)
async def create_baseline(
    name: str, body: schemas.BaselineIn, backend: BackendDep, actor: AdminDep
) -> schemas.BaselineOut:
    """A named software baseline for the model: one package target per hardware id."""

    def work(session: Session) -> schemas.BaselineOut:
        baseline = inventory.create_baseline(session, actor, name, body.name, body.targets)
        return _baseline_out(session, baseline)

    return await in_transaction(backend, work)


@router.get("/models/{name}/baselines", response_model=list[schemas.BaselineOut])
async def list_baselines(
    name: str, backend: BackendDep, actor: AdminDep
) -> list[schemas.BaselineOut]:
    def work(session: Session) -> list[schemas.BaselineOut]:
        model = inventory.get_model(session, name)
        rows = session.scalars(select(Baseline).where(Baseline.model_id == model.id))
        return [_baseline_out(session, b) for b in rows]

    return await in_transaction(backend, work)


# --- vehicles ------------------------------------------------------------------------------------


def _vehicle_out(vehicle: Vehicle) -> schemas.VehicleOut:
    return schemas.VehicleOut(
        vin=vehicle.vin,
        model=vehicle.model.name,
        baseline=vehicle.baseline.name if vehicle.baseline else None,
        last_seen_at=vehicle.last_seen_at,
        ecus=[
            schemas.EcuOut(
                serial=e.serial,
                hardware_id=e.hardware_id,
                primary=e.is_primary,
                installed_target=e.installed_target,
                installed_sha256=e.installed_sha256,
                updated_at=e.updated_at,
            )
            for e in vehicle.ecus
        ],
    )


@router.post("/vehicles", status_code=201, response_model=schemas.VehicleOut)
async def register_vehicle(
    body: schemas.VehicleIn, backend: BackendDep, actor: AdminDep
) -> schemas.VehicleOut:
    """Register a vehicle; its ECUs must fill the model's topology exactly."""

    def work(session: Session) -> schemas.VehicleOut:
        ecus = [
            inventory.EcuSpec(e.serial, e.hardware_id, e.public_key, e.primary) for e in body.ecus
        ]
        inventory.register_vehicle(
            session, actor, body.vin, body.model, ecus, baseline_name=body.baseline
        )
        return _vehicle_out(inventory.get_vehicle(session, body.vin))

    return await in_transaction(backend, work)


@router.get("/vehicles", response_model=list[schemas.VehicleOut])
async def list_vehicles(
    backend: BackendDep,
    actor: AdminDep,
    model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
) -> list[schemas.VehicleOut]:
    def work(session: Session) -> list[schemas.VehicleOut]:
        return [
            _vehicle_out(inventory.get_vehicle(session, v.vin))
            for v in inventory.list_vehicles(session, model, limit, after_id)
        ]

    return await in_transaction(backend, work)


@router.get("/vehicles/{vin}", response_model=schemas.VehicleOut)
async def get_vehicle(vin: str, backend: BackendDep, actor: AdminDep) -> schemas.VehicleOut:
    return await in_transaction(backend, lambda s: _vehicle_out(inventory.get_vehicle(s, vin)))


@router.get("/ecus/{serial}/history", response_model=list[schemas.EcuVersionOut])
async def ecu_history(
    serial: str, backend: BackendDep, actor: AdminDep
) -> list[schemas.EcuVersionOut]:
    """Every image the ECU reported in verified manifests, oldest first."""

    def work(session: Session) -> list[schemas.EcuVersionOut]:
        return [
            schemas.EcuVersionOut(target=v.target, sha256=v.sha256, reported_at=v.reported_at)
            for v in inventory.ecu_history(session, serial)
        ]

    return await in_transaction(backend, work)


# --- packages ------------------------------------------------------------------------------------


def _package_out(session: Session, package: Package) -> schemas.PackageOut:
    base = session.get(Package, package.base_package_id) if package.base_package_id else None
    return schemas.PackageOut(
        name=package.name,
        version=package.version,
        kind=package.kind,
        target=package.target,
        hardware_ids=package.hardware_ids,
        release_counter=package.release_counter,
        supplier=package.supplier,
        length=package.length,
        sha256=package.sha256,
        base_target=base.target if base else None,
    )


@router.put(
    "/packages/{name}/{version}",
    status_code=201,
    response_model=schemas.PackageOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_package(
    *,
    name: str,
    version: str,
    request: Request,
    backend: BackendDep,
    actor: AdminDep,
    hardware_id: Annotated[list[str], Query(min_length=1, max_length=64)],
    kind: str = "image",
    release_counter: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    supplier: Annotated[str, Query(max_length=128)] = "",
    target: Annotated[str | None, Query(max_length=512)] = None,
) -> schemas.PackageOut:
    """Upload an image (raw body, streamed, size-capped); deltas from earlier versions follow."""
    spec = packages.PackageSpec(
        name, version, tuple(hardware_id), kind, release_counter, supplier, target
    )
    spec.validate()
    spool = await spool_capped(request, backend.settings.max_upload_bytes)
    with spool:

        def work(session: Session) -> schemas.PackageOut:
            package = packages.upload(
                session,
                backend.store,
                actor,
                spec,
                spool,  # type: ignore[arg-type]
                max_bytes=backend.settings.max_upload_bytes,
            )
            if backend.image_signer is not None:
                imagerepo.publish_online(session, backend.image_signer, package)
            return _package_out(session, package)

        return await in_transaction(backend, work)


@router.get("/packages", response_model=list[schemas.PackageOut])
async def list_packages(
    backend: BackendDep, actor: AdminDep, name: str | None = None, hardware_id: str | None = None
) -> list[schemas.PackageOut]:
    def work(session: Session) -> list[schemas.PackageOut]:
        return [
            _package_out(session, p) for p in packages.list_packages(session, name, hardware_id)
        ]

    return await in_transaction(backend, work)


@router.get("/deltas", response_model=list[schemas.DeltaJobOut])
async def list_delta_jobs(backend: BackendDep, actor: AdminDep) -> list[schemas.DeltaJobOut]:
    """Background delta generation jobs: state, why one failed or was skipped, sizes."""

    def work(session: Session) -> list[schemas.DeltaJobOut]:
        return [schemas.DeltaJobOut.model_validate(job) for job in deltas.list_jobs(session)]

    return await in_transaction(backend, work)


# --- campaigns -----------------------------------------------------------------------------------


@router.post("/campaigns", status_code=201)
async def create_campaign(
    body: schemas.CampaignIn, backend: BackendDep, actor: AdminDep
) -> dict[str, Any]:
    """Define a campaign (draft): targeting, packages, phased groups, schedule, window."""
    spec = campaigns.CampaignSpec(
        name=body.name,
        targeting=campaigns.Targeting(
            body.targeting.model,
            body.targeting.baseline,
            tuple(body.targeting.vins),
            body.targeting.ecu_versions,
        ),
        packages=tuple(body.packages),
        groups=tuple(
            campaigns.GroupSpec(g.percent, g.success_threshold, g.error_threshold)
            for g in body.groups
        ),
        consent_required=body.consent_required,
        start_at=body.start_at,
        window=body.window,
        release_notes_url=body.release_notes_url,
    )

    def work(session: Session) -> dict[str, Any]:
        campaigns.create(session, actor, spec)
        return campaigns.status(session, spec.name)

    return await in_transaction(backend, work)


@router.get("/campaigns")
async def list_campaigns(backend: BackendDep, actor: AdminDep) -> list[dict[str, Any]]:
    def work(session: Session) -> list[dict[str, Any]]:
        return [{"name": c.name, "state": c.state} for c in campaigns.list_all(session)]

    return await in_transaction(backend, work)


@router.get("/campaigns/{name}")
async def campaign_status(name: str, backend: BackendDep, actor: AdminDep) -> dict[str, Any]:
    """Aggregate status: counts by assignment state, overall and per rollout group."""
    return await in_transaction(backend, lambda s: campaigns.status(s, name))


@router.get("/campaigns/{name}/vehicles")
async def campaign_vehicles(
    *,
    name: str,
    backend: BackendDep,
    actor: AdminDep,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
) -> list[dict[str, Any]]:
    """Per-vehicle status, paged by ``after_id``."""
    return await in_transaction(
        backend, lambda s: campaigns.vehicle_states(s, name, state, limit, after_id)
    )


@router.post("/campaigns/{name}/start")
async def start_campaign(name: str, backend: BackendDep, actor: AdminDep) -> dict[str, Any]:
    """Resolve targets, check consistency per vehicle, split into groups, start the first."""
    return await in_transaction(backend, lambda s: campaigns.start(s, actor, name))


@router.post("/campaigns/{name}/pause")
async def pause_campaign(
    name: str, body: schemas.ReasonIn, backend: BackendDep, actor: AdminDep
) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        campaigns.pause(session, actor, name, body.reason)
        return campaigns.status(session, name)

    return await in_transaction(backend, work)


@router.post("/campaigns/{name}/resume")
async def resume_campaign(name: str, backend: BackendDep, actor: AdminDep) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        campaigns.resume(session, actor, name)
        return campaigns.status(session, name)

    return await in_transaction(backend, work)


@router.post("/campaigns/{name}/cancel")
async def cancel_campaign(
    name: str, body: schemas.ReasonIn, backend: BackendDep, actor: AdminDep
) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        campaigns.cancel(session, actor, name, body.reason)
        return campaigns.status(session, name)

    return await in_transaction(backend, work)


# --- image repository ----------------------------------------------------------------------------


@router.put(
    "/image-repo/{filename}",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
    },
)
async def publish_image_metadata(
    filename: str, request: Request, backend: BackendDep, actor: AdminDep
) -> dict[str, Any]:
    """Publish an offline-signed image-repository file (``N.root.json``, ``timestamp.json``...)."""
    body = await read_capped(request, backend.settings.max_admin_json_bytes)

    def work(session: Session) -> dict[str, Any]:
        row = imagerepo.upload(session, actor, filename, body)
        return {"name": row.name, "role": row.role, "version": row.version}

    return await in_transaction(backend, work)


@router.get("/image-repo")
async def list_image_metadata(backend: BackendDep, actor: AdminDep) -> list[dict[str, object]]:
    return await in_transaction(backend, imagerepo.listing)


# --- PKI -----------------------------------------------------------------------------------------


@router.post("/pki/cas", status_code=201, response_model=schemas.CaOut)
async def create_ca(body: schemas.CaIn, backend: BackendDep, actor: AdminDep) -> schemas.CaOut:
    """Create a root CA (no parent) or an intermediate; the newest becomes the issuing CA."""

    def work(session: Session) -> schemas.CaOut:
        ca = pki.create_ca(
            session, backend.settings.key_dir, actor, body.name, body.parent, key_uri=body.key_uri
        )
        return schemas.CaOut(name=ca.name, issuing=ca.issuing, cert_pem=ca.cert_pem)

    return await in_transaction(backend, work)


@router.get("/pki/cas", response_model=list[schemas.CaOut])
async def list_cas(backend: BackendDep, actor: AdminDep) -> list[schemas.CaOut]:
    def work(session: Session) -> list[schemas.CaOut]:
        return [
            schemas.CaOut(name=ca.name, issuing=ca.issuing, cert_pem=ca.cert_pem)
            for ca in session.scalars(
                select(CertificateAuthority).order_by(CertificateAuthority.id)
            )
        ]

    return await in_transaction(backend, work)


@router.get(
    "/pki/cas/{name}/crl",
    response_class=Response,
    responses={200: {"content": {"application/pkix-crl": {"schema": {"type": "string"}}}}},
)
async def ca_crl(name: str, backend: BackendDep, actor: AdminDep) -> Response:
    """The CA's CRL (PEM), for TLS terminators that check revocation themselves."""
    data = await in_transaction(backend, lambda s: pki.crl(s, backend.settings.key_dir, name))
    return Response(data, media_type="application/pkix-crl")


def _cert_out(row: DeviceCertificate, vin: str) -> schemas.CertificateOut:
    return schemas.CertificateOut(
        serial=row.serial,
        fingerprint=row.fingerprint,
        vin=vin,
        not_after=row.not_after,
        revoked_at=row.revoked_at,
        cert_pem=row.cert_pem,
    )


@router.post("/vehicles/{vin}/certificates", status_code=201, response_model=schemas.CertificateOut)
async def issue_certificate(
    vin: str, body: schemas.CsrIn, backend: BackendDep, actor: AdminDep
) -> schemas.CertificateOut:
    """Issue the vehicle's TLS client certificate from its CSR (subject set to the VIN)."""

    def work(session: Session) -> schemas.CertificateOut:
        row = pki.issue(
            session, backend.settings.key_dir, actor, vin, body.csr_pem.encode(), days=body.days
        )
        return _cert_out(row, vin)

    return await in_transaction(backend, work)


@router.get("/vehicles/{vin}/certificates", response_model=list[schemas.CertificateOut])
async def list_certificates(
    vin: str, backend: BackendDep, actor: AdminDep
) -> list[schemas.CertificateOut]:
    return await in_transaction(
        backend, lambda s: [_cert_out(r, vin) for r in pki.certificates_of(s, vin)]
    )


@router.post("/pki/certificates/{serial}/revoke", response_model=schemas.CertificateOut)
async def revoke_certificate(
    serial: str, body: schemas.ReasonIn, backend: BackendDep, actor: AdminDep
) -> schemas.CertificateOut:
    """Revoke a device certificate: the device API refuses it from the next request on."""

    def work(session: Session) -> schemas.CertificateOut:
        row = pki.revoke(session, actor, serial, body.reason)
        return _cert_out(row, session.get_one(Vehicle, row.vehicle_id).vin)

    return await in_transaction(backend, work)


# --- audit and logs ------------------------------------------------------------------------------


@router.get("/audit")
async def search_audit(
    *,
    backend: BackendDep,
    admin: AdminDep,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    after_id: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Audit records in append order; page on with ``after_id``."""
    query = audit.AuditQuery(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=since,
        until=until,
        after_id=after_id,
        limit=limit,
    )
    return await in_transaction(
        backend, lambda s: [audit.as_dict(e) for e in audit.search(s, query)]
    )


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "JSON Lines, one audit record per line",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def export_audit(
    *,
    backend: BackendDep,
    admin: AdminDep,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> StreamingResponse:
    """Every matching record as JSON Lines (``application/x-ndjson``), streamed."""
    query = audit.AuditQuery(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=since,
        until=until,
    )

    def lines() -> Iterator[str]:
        with backend.sessions() as session:
            yield from audit.export_jsonl(session, query)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/logs")
async def search_logs(
    *,
    backend: BackendDep,
    admin: AdminDep,
    vin: str | None = None,
    campaign: str | None = None,
    q: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Uploaded vehicle logs, newest first, by vehicle, campaign and contained text."""
    return await in_transaction(backend, lambda s: device.search_logs(s, vin, campaign, q, limit))
