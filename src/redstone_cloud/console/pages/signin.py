"""Sign-in and sign-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from redstone_cloud.console import accounts, auth
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.errors import Throttled
from redstone_cloud.console.web import (
    COOKIE,
    SEED_COOKIE,
    backend_of,
    client_address,
    refuse_without_token,
    render,
    require,
    set_cookie,
)
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.types import utcnow

router = APIRouter()


def _form(
    request: Request, next_url: str, name: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    seed = request.cookies.get(SEED_COOKIE) or auth.new_session_id()
    response = render(
        request,
        "login.html",
        status_code=status,
        next_url=next_url,
        name=name,
        error=error,
        signin_csrf=auth.csrf_token(seed),
    )
    set_cookie(response, request, SEED_COOKIE, seed, max_age=3600)
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "") -> HTMLResponse:
    return _form(request, auth.safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    name: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=auth.MAX_PASSWORD)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    await refuse_without_token(request, request.cookies.get(SEED_COOKIE))
    backend = backend_of(request)
    target = auth.safe_next(next)

    def work() -> SignedIn | None:
        with transaction(backend.sessions) as session:
            return accounts.sign_in(
                session,
                name=name,
                password=password,
                client=client_address(request),
                rules=backend.settings.console,
                now=utcnow(),
            )

    try:
        user = await run_in_threadpool(work)
    except Throttled as exc:
        response = _form(request, target, name, str(exc), status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        return _form(request, target, name, accounts.REFUSED, status=401)
    redirect = RedirectResponse(target, status_code=303)
    set_cookie(redirect, request, COOKIE, user.session_id, max_age=None)
    redirect.delete_cookie(SEED_COOKIE, path=auth.PREFIX)
    return redirect


@router.post("/logout")
async def logout(request: Request, user: Annotated[SignedIn, require()]) -> Response:
    backend = backend_of(request)

    def work() -> None:
        with transaction(backend.sessions) as session:
            accounts.close_session(session, user)

    await run_in_threadpool(work)
    redirect = RedirectResponse(f"{auth.PREFIX}/login", status_code=303)
    redirect.delete_cookie(COOKIE, path=auth.PREFIX)
    return redirect
