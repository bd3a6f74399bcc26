"""Campaign pages: the list, a new campaign from a baseline, one campaign with its live
progress (Server-Sent Events), and start / pause / resume / cancel for release managers.

Every change goes through ``services.campaigns`` with the user as the audit actor,
exactly as the admin API's routes do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from redstone_cloud.api.common import in_transaction
from redstone_cloud.console import accounts, auth, campaign_form
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.queries import campaigns as queries
from redstone_cloud.console.web import COOKIE, backend_of, render, require, templates
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.types import utcnow
from redstone_cloud.errors import CloudError, NotFound
from redstone_cloud.services import campaigns

router = APIRouter()

Viewer = Annotated[SignedIn, require()]
ReleaseManager = Annotated[SignedIn, require("release-manager")]

LIVE_EVERY_S = 1.0
"""How often the live view looks for changed counts (one grouped query per look)."""
LIVE_RECHECK_S = 30.0
"""How often a live stream re-checks its session: a signed-out or expired one ends it."""

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
    from urllib.parse import quote

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


def _event(kind: str, html: str) -> str:
    """One SSE message: every line of the payload as its own ``data:`` field."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {kind}\n{lines}\n"


@router.get("/campaigns/{name}/live")
async def campaign_live(request: Request, name: str, user: Viewer) -> StreamingResponse:
    """Server-Sent Events: a ``progress`` message with the rendered counts whenever
    they change (and at once on connect); ``end`` when the session has expired."""
    backend = backend_of(request)
    await in_transaction(backend, lambda s: campaigns.get(s, name))  # 404 before streaming
    session_id = request.cookies.get(COOKIE, "")

    def still_signed_in() -> bool:
        with transaction(backend.sessions) as session:
            return (
                accounts.resume(session, session_id, backend.settings.console, utcnow()) is not None
            )

    async def stream() -> AsyncIterator[str]:
        last = ""
        rechecked = asyncio.get_running_loop().time()
        yield "retry: 3000\n\n"
        while not await request.is_disconnected():
            try:
                progress = await in_transaction(backend, lambda s: queries.progress(s, name))
            except NotFound:
                yield _event("end", "The campaign is gone.")
                return
            html = _fragment(progress, user)
            if html != last:
                last = html
                yield _event("progress", html)
            await asyncio.sleep(LIVE_EVERY_S)
            now = asyncio.get_running_loop().time()
            if now - rechecked >= LIVE_RECHECK_S:
                rechecked = now
                if not await asyncio.to_thread(still_signed_in):
                    yield _event("end", "Your session has ended; sign in again.")
                    return
                yield ": still here\n\n"  # keeps proxies from closing an idle stream

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/campaigns/{name}/{action}")
async def campaign_action(
    request: Request, name: str, action: str, user: ReleaseManager
) -> Response:
    act = ACTIONS.get(action)
    if act is None:
        raise NotFound(f"no campaign action {action!r}")
    await in_transaction(backend_of(request), lambda s: act(s, user.actor, name))
    return RedirectResponse(_path(name), status_code=303)


def window_text(window: dict[str, Any] | None) -> str:
    """A maintenance window in words, e.g. "Mon–Fri 01:00–05:00 UTC"."""
    if not window:
        return "any time"
    days = window.get("days", list(range(7)))
    names = ", ".join(campaign_form.DAYS[d] for d in days)
    return f"{names} {window.get('start')}–{window.get('end')} UTC"


def start_text(when: dt.datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC") if when else "when started"


templates.filters["window_text"] = window_text
templates.filters["start_text"] = start_text
