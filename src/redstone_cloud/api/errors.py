"""Every error answer is ``{"error": "<one line>"}`` (docs/api.md section 1), including
the ones the framework makes itself (unknown route, wrong method, invalid parameters)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from redstone_agent.errors import RedstoneError
from redstone_cloud.api.common import error_response

_log = logging.getLogger("redstone_cloud.api")


def one_line(text: object) -> str:
    return " ".join(str(text).split())[:500] or "error"


def validation_message(errors: Any) -> str:
    """FastAPI's list of validation errors as one line naming the first one."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return one_line(f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg"))


class RejectNul:
    """Refuse a NUL character anywhere in the path or query (``%00``) before routing:
    no database stores it in text, and no name or filter legitimately holds one."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")
        ):
            response = JSONResponse({"error": "NUL characters are not allowed in URLs"}, 400)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Map our errors, the framework's and unexpected ones to the documented shape."""

    @app.exception_handler(RedstoneError)
    async def redstone_error(_request: Request, exc: RedstoneError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": one_line(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_message(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)
