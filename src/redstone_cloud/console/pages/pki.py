"""PKI: the CAs, device certificates with their state, and for admins issue and revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console import auth
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.queries import records
from redstone_cloud.console.web import backend_of, render, require
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import CloudError
from redstone_cloud.services import pki

router = APIRouter()

Viewer = Annotated[SignedIn, require()]
Admin = Annotated[SignedIn, require("admin")]
REASONS = ("key compromise", "superseded", "vehicle retired", "other")
MAX_CSR = 16_384


async def _page(
    request: Request,
    *,
    vin: str = "",
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    issued: str = "",
) -> HTMLResponse:
    def work(session: Session) -> tuple[list[records.AuthorityLine], list[records.CertLine]]:
        return records.authorities(session), records.certificates(session, vin)

    authorities, certs = await in_transaction(backend_of(request), work)
    return render(
        request,
        "pki.html",
        status_code=status,
        authorities=authorities,
        certs=certs,
        now=utcnow(),
        vin=vin,
        errors=errors or {},
        form=form or {},
        issued=issued,
        reasons=REASONS,
        active="pki",
    )


@router.get("/pki", response_class=HTMLResponse)
async def pki_page(
    request: Request, user: Viewer, vin: Annotated[str, Query(max_length=17)] = ""
) -> HTMLResponse:
    return await _page(request, vin=vin.strip().upper())


@router.post("/pki/issue", response_class=HTMLResponse)
async def issue(
    request: Request,
    user: Admin,
    vin: Annotated[str, Form(max_length=64)] = "",
    csr_pem: Annotated[str, Form(max_length=MAX_CSR)] = "",
    days: Annotated[str, Form(max_length=8)] = "825",
) -> HTMLResponse:
    errors: dict[str, str] = {}
    vin = vin.strip().upper()
    if not days.strip().isdigit() or not 1 <= int(days) <= 3650:
        errors["days"] = "A whole number of days from 1 to 3650."
    if "BEGIN CERTIFICATE REQUEST" not in csr_pem:
        errors["csr_pem"] = "Paste a PEM certificate signing request (BEGIN CERTIFICATE REQUEST)."
    issued = ""
    if not errors:
        backend = backend_of(request)

        def work(session: Session) -> str:
            row = pki.issue(
                session,
                backend.settings.key_dir,
                user.actor,
                vin,
                csr_pem.encode(),
                days=int(days),
            )
            return row.cert_pem

        try:
            issued = await in_transaction(backend, work)
        except CloudError as exc:  # unknown VIN, a CSR that does not parse or verify
            errors["vin" if exc.status == 404 else "csr_pem"] = str(exc)
    form = {"vin": vin, "csr_pem": csr_pem, "days": days}
    if errors:
        return await _page(request, status=422, errors=errors, form=form)
    return await _page(request, vin=vin, issued=issued)


@router.post("/pki/certificates/{serial}/revoke")
async def revoke(
    request: Request,
    serial: str,
    user: Admin,
    reason: Annotated[str, Form(max_length=64)] = "other",
) -> Response:
    chosen = reason if reason in REASONS else "other"
    await in_transaction(backend_of(request), lambda s: pki.revoke(s, user.actor, serial, chosen))
    return RedirectResponse(f"{auth.PREFIX}/pki", status_code=303)
