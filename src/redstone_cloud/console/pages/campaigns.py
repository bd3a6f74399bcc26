"""Campaign pages: the list, a new campaign from a baseline, one campaign with its live
progress (Server-Sent Events), and start / pause / resume / cancel for release managers.

Every change goes through ``services.campaigns`` with the user as the audit actor,
exactly as the admin API's routes do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console import auth, campaign_form, live
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.queries import campaigns as queries
from redstone_cloud.console.web import backend_of, render, require, templates
from redstone_cloud.errors import CloudError, NotFound
from redstone_cloud.services import campaigns

router = APIRouter()

Viewer = Annotated[SignedIn, require()]
ReleaseManager = Annotated[SignedIn, require("release-manager")]

ACTIONS: dict[str, Callable[[Session, str, str], Any]] = {
    "start": campaigns.start,
    "pause": campaigns.pause,
    "resume": campaigns.resume,
    "cancel": campaigns.cancel,
}
ALLOWED_IN = {
    "draft": ("start", "cancel"),
    "running": ("pause", "cancel"),
    "paused": ("resume", "cancel"),
}
"""The buttons each campaign state shows (the service refuses the rest anyway)."""


def _path(name: str) -> str:
    return f"{auth.PREFIX}/campaigns/{quote(name, safe='')}"


@router.get("/campaigns", response_class=HTMLResponse)
async def campaign_list(request: Request, user: Viewer) -> HTMLResponse:
    rows = await in_transaction(backend_of(request), queries.campaign_rows)
    return render(request, "campaigns.html", rows=rows, active="campaigns")


async def _form_page(
    request: Request,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, list[str]] | None = None,
) -> HTMLResponse:
    offered = await in_transaction(backend_of(request), queries.choices)
    values = form or {"groups": ["10, 50, 100"], "success_threshold": ["95"]}
    values.setdefault("error_threshold", ["5"])
    values.setdefault("target", ["model"])
    return render(
        request,
        "campaign_new.html",
        status_code=status,
        offered=offered,
        errors=errors or {},
        form=values,
        days=campaign_form.DAYS,
        active="campaigns",
    )


@router.get("/campaigns/new", response_class=HTMLResponse)
async def new_campaign(request: Request, user: ReleaseManager) -> HTMLResponse:
    return await _form_page(request)


@router.post("/campaigns", response_class=HTMLResponse)
async def create_campaign(request: Request, user: ReleaseManager) -> Response:
    submitted = await request.form()
    fields: dict[str, list[str]] = {}
    for key, value in submitted.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value[:4096])
    choices = await in_transaction(backend_of(request), queries.choices)
    offered = campaign_form.Offered(
        models=choices.models,
        baselines={b.key: b.packages for b in choices.baselines},
        packages=choices.packages,
    )
    spec, errors = campaign_form.read(fields, offered)
    if spec is not None:
        try:
            await in_transaction(
                backend_of(request), lambda s: campaigns.create(s, user.actor, spec)
            )
        except CloudError as exc:  # a name taken, a package gone, a window refused
            errors = {"name" if exc.status == 409 else "form": str(exc)}
    if errors:
        return await _form_page(request, 422, errors, fields)
    return RedirectResponse(_path(spec.name if spec else ""), status_code=303)


@router.get("/campaigns/{name}", response_class=HTMLResponse)
async def campaign_page(request: Request, name: str, user: Viewer) -> HTMLResponse:
    def work(session: Session) -> tuple[queries.Detail, queries.Progress]:
        return queries.detail(session, name), queries.progress(session, name)

    detail, progress = await in_transaction(backend_of(request), work)
    return render(
        request,
        "campaign.html",
        c=detail,
        p=progress,
        actions=ALLOWED_IN.get(detail.state, ()),
        path=_path(name),
        active="campaigns",
    )


def _fragment(progress: queries.Progress, user: SignedIn) -> str:
    return templates.get_template("_campaign_progress.html").render(
        prefix=auth.PREFIX, p=progress, user=user, csrf=user.csrf
    )


@router.get("/campaigns/{name}/progress", response_class=HTMLResponse)
async def campaign_progress(request: Request, name: str, user: Viewer) -> HTMLResponse:
    """The live part alone: what the live stream sends, for a reload without JS."""
    progress = await in_transaction(backend_of(request), lambda s: queries.progress(s, name))
    return HTMLResponse(_fragment(progress, user))


@router.get("/campaigns/{name}/live")
async def campaign_live(request: Request, name: str, user: Viewer) -> StreamingResponse:
    """Server-Sent Events: a ``progress`` message with the rendered counts whenever
    they change (and at once on connect); ``end`` when the campaign or the session is
    gone."""
    backend = backend_of(request)
    await in_transaction(backend, lambda s: campaigns.get(s, name))  # 404 before streaming
    last = ""

    async def tick() -> list[live.Message]:
        nonlocal last
        try:
            progress = await in_transaction(backend, lambda s: queries.progress(s, name))
        except NotFound:
            return [("end", "The campaign is gone.")]
        html = _fragment(progress, user)
        if html == last:
            return []
        last = html
        return [("progress", html)]

    return live.respond(request, backend, tick)


@router.post("/campaigns/{name}/{action}")
async def campaign_action(
    request: Request, name: str, action: str, user: ReleaseManager
) -> Response:
    act = ACTIONS.get(action)
    if act is None:
        raise NotFound(f"no campaign action {action!r}")
    await in_transaction(backend_of(request), lambda s: act(s, user.actor, name))
    return RedirectResponse(_path(name), status_code=303)
