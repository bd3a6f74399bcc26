"""The console as an ASGI app of its own, mounted at ``/console`` by ``create_app``:
its own error pages (HTML, never a traceback), security headers and static files."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from redstone_agent.errors import RedstoneError
from redstone_cloud.backend import Backend
from redstone_cloud.console import auth
from redstone_cloud.console.errors import CsrfRefused, SignInNeeded, Throttled
from redstone_cloud.console.pages import (
    analytics,
    audit,
    campaigns,
    fleet,
    logs,
    packages,
    pki,
    signin,
    users,
    vehicle,
)
from redstone_cloud.console.web import render
from redstone_cloud.errors import CloudError

_log = logging.getLogger("redstone_cloud.console")

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
"""Scripts only from the console's own files: vehicle-supplied text that slipped past
escaping still could not run."""

TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    422: "Not accepted",
    429: "Too many requests",
    500: "Server error",
}


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(
        request,
        "error.html",
        status_code=status,
        title=TITLES.get(status, "Error"),
        message=message,
        status=status,
    )


def create_console(backend: Backend) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith(f"{auth.PREFIX}/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded) -> Response:
        target = f"{auth.PREFIX}/login"
        if str(exc):
            target += "?next=" + quote(auth.safe_next(str(exc)), safe="/")
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(_request: Request, exc: CsrfRefused) -> HTMLResponse:
        return HTMLResponse(f"<!doctype html><title>Refused</title><p>{exc}</p>\n", status_code=403)

    @app.exception_handler(RedstoneError)
    async def known_error(request: Request, exc: RedstoneError) -> HTMLResponse:
        status = exc.status if isinstance(exc, CloudError) else 400
        response = error_page(request, status, str(exc))
        if isinstance(exc, Throttled):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
        return error_page(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> HTMLResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = " ".join(str(p) for p in first.get("loc", ())[1:])
        return error_page(request, 422, f"{where}: {first.get('msg', 'invalid')}".strip(": "))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> HTMLResponse:
        _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_page(request, 500, "Something went wrong on the server; it is logged.")

    app.mount(
        "/static", StaticFiles(packages=[("redstone_cloud.console", "static")]), name="static"
    )
    pages = (signin, fleet, vehicle, packages, analytics, campaigns, logs, audit, pki, users)
    for page in pages:
        app.include_router(page.router)
    return app
