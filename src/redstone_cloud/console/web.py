"""HTTP plumbing of the console: templates, the signed-in user, roles, CSRF, cookies.

Pages declare what they need as dependencies: ``UserDep`` (any signed-in user),
``require("release-manager")`` / ``require("admin")``, and ``CsrfDep`` on every
unsafe method. The errors these raise become pages in :mod:`redstone_cloud.console.app`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool

from redstone_cloud.backend import Backend
from redstone_cloud.console import accounts, auth
from redstone_cloud.console.accounts import SignedIn
from redstone_cloud.console.errors import CsrfRefused, RoleRefused, SignInNeeded
from redstone_cloud.console.filters import FILTERS
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.types import utcnow

COOKIE = "redstone_console"
SEED_COOKIE = "redstone_console_signin"
"""A random value set by the sign-in page; its form's CSRF token derives from it."""
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

templates = Environment(
    loader=PackageLoader("redstone_cloud.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


templates.filters.update(FILTERS)


def backend_of(request: Request) -> Backend:
    backend = request.app.state.backend
    assert isinstance(backend, Backend)
    return backend


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """``template`` with the signed-in user (if any) and its CSRF token in context."""
    user = getattr(request.state, "user", None)
    body = templates.get_template(template).render(
        prefix=auth.PREFIX, user=user, csrf=user.csrf if user else "", request=request, **context
    )
    return HTMLResponse(body, status_code=status_code)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def is_https(request: Request, backend: Backend) -> bool:
    return backend.settings.console.secure_cookie == "always" or request.url.scheme == "https"


def set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None
) -> None:
    """HttpOnly, SameSite=Lax, path /console, Secure over HTTPS (docs/console.md)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=auth.PREFIX,
        httponly=True,
        samesite="lax",
        secure=is_https(request, backend_of(request)),
    )


def original_target(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def current_user(request: Request) -> SignedIn:
    """The session behind the cookie, or :class:`SignInNeeded` (redirect to sign-in)."""
    backend = backend_of(request)
    session_id = request.cookies.get(COOKIE)
    user = None
    if session_id:

        def work() -> SignedIn | None:
            with transaction(backend.sessions) as session:
                return accounts.resume(session, session_id, backend.settings.console, utcnow())

        user = await run_in_threadpool(work)
    if user is None:
        raise SignInNeeded(original_target(request) if request.method == "GET" else "")
    request.state.user = user
    return user


UserDep = Annotated[SignedIn, Depends(current_user)]


async def _presented_token(request: Request) -> str | None:
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    return presented


async def refuse_without_token(request: Request, secret: str | None) -> None:
    """Refuse an unsafe request whose form field or header lacks the token of ``secret``."""
    if request.method in SAFE_METHODS:
        return
    if not auth.csrf_ok(secret, await _presented_token(request)):
        raise CsrfRefused("Refused: the form's CSRF token is missing or wrong; reload the page.")


def require(role: str = "viewer") -> Any:
    """A dependency: the signed-in user, if their role allows ``role``'s pages; on an
    unsafe method also the session's CSRF token."""
    auth.check_role(role)

    async def check(request: Request, user: UserDep) -> SignedIn:
        if not user.may(role):
            raise RoleRefused(f"This needs the {role} role; you are {user.role}.")
        await refuse_without_token(request, user.session_id)
        return user

    return Depends(check)
