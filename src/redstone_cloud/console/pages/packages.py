"""Packages: images and configs, server-made deltas and what they save, the image
repository's metadata; release managers upload a package from here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console import auth
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.queries import packages as queries
from redstone_cloud.console.web import backend_of, render, require
from redstone_cloud.errors import CloudError
from redstone_cloud.services import imagerepo, packages

router = APIRouter()

Viewer = Annotated[SignedIn, require()]
ReleaseManager = Annotated[SignedIn, require("release-manager")]
FORM_OVERHEAD = 64 * 1024
"""Bytes a multipart form adds around the file (fields, boundaries)."""


async def _page(
    request: Request,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    view = await in_transaction(backend_of(request), queries.view)
    return render(
        request,
        "packages.html",
        status_code=status,
        v=view,
        errors=errors or {},
        form=form or {"kind": "image", "release_counter": "0"},
        active="packages",
    )


@router.get("/packages", response_class=HTMLResponse)
async def packages_page(request: Request, user: Viewer) -> HTMLResponse:
    return await _page(request)


def _spec(form: dict[str, str], errors: dict[str, str]) -> packages.PackageSpec | None:
    counter = form["release_counter"].strip() or "0"
    if not counter.isdigit():
        errors["release_counter"] = "A whole number (0 or more)."
        return None
    hardware_ids = tuple(h.strip() for h in form["hardware_ids"].split(",") if h.strip())
    spec = packages.PackageSpec(
        form["name"].strip(),
        form["version"].strip(),
        hardware_ids,
        form["kind"],
        int(counter),
        form["supplier"].strip(),
    )
    try:
        spec.validate()
    except CloudError as exc:
        text = str(exc)
        field = next(
            (f for f in ("name", "version", "hardware", "release", "supplier") if f in text),
            "name",
        )
        errors[{"hardware": "hardware_ids", "release": "release_counter"}.get(field, field)] = text
        return None
    return spec


@router.post("/packages", response_class=HTMLResponse)
async def upload(request: Request, user: ReleaseManager) -> Response:
    backend = backend_of(request)
    limit = backend.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        return await _page(request, 413, {"file": f"The file is over the {limit} byte limit."})
    submitted = await request.form(max_files=1, max_fields=16)
    form = {
        k: str(submitted.get(k) or "")[:512]
        for k in ("name", "version", "hardware_ids", "kind", "release_counter", "supplier")
    }
    errors: dict[str, str] = {}
    upload = submitted.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors["file"] = "Choose the image file to upload."
    spec = _spec(form, errors)
    if spec is None or errors or not isinstance(upload, UploadFile):
        return await _page(request, 422, errors, form)

    def work(session: Session) -> None:
        package = packages.upload(
            session, backend.store, user.actor, spec, upload.file, max_bytes=limit
        )
        if backend.image_signer is not None:
            imagerepo.publish_online(session, backend.image_signer, package)

    try:
        await in_transaction(backend, work)
    except CloudError as exc:  # a name/version taken, over the size limit
        return await _page(request, exc.status, {"name": str(exc)}, form)
    finally:
        await upload.close()
    return RedirectResponse(f"{auth.PREFIX}/packages", status_code=303)
