"""The FastAPI application: routers, error mapping, OpenAPI metadata."""

from __future__ import annotations

from fastapi import FastAPI

from redstone_cloud import __doc__ as package_doc
from redstone_cloud.api import admin, bundles, device, est, metrics, targets
from redstone_cloud.api.errors import RejectNul, install_error_handlers
from redstone_cloud.api.fastpoll import FastPoll
from redstone_cloud.backend import Backend
from redstone_cloud.console.app import create_console

API_VERSION = "1.0.0"


def create_app(backend: Backend) -> FastAPI:
    """The ASGI app for ``backend`` (tests build one per database).

    ``/docs``, ``/redoc`` and ``/openapi.json`` are served only with
    ``api_docs = true``; ``redstone-cloud openapi`` prints the document either way.
    """
    docs = backend.settings.api_docs
    app = FastAPI(
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        title="Redstone OTA cloud",
        version=API_VERSION,
        description=(package_doc or "").strip()
        + "\n\nAdmin routes take `Authorization: Bearer <token>`; device routes need a TLS"
        ' client certificate issued by the backend\'s PKI. Errors are `{"error": "..."}`.',
    )
    app.state.backend = backend

    install_error_handlers(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (no database round trip)."""
        return {"status": "ok"}

    app.include_router(admin.router)
    app.include_router(targets.router)
    app.include_router(bundles.router)
    app.include_router(device.router)
    app.include_router(est.router)
    app.mount("/console", create_console(backend))
    app.add_middleware(RejectNul)
    metrics.install(app, backend)
    return app


def create_asgi(backend: Backend) -> FastPoll:
    """What ``serve`` runs: the cached-poll fast path wrapped around the app, outermost
    so that a 304 costs no middleware at all."""
    return FastPoll(create_app(backend), backend, metrics.fast_path_recorder(backend.settings))


def openapi_document() -> str:
    """The OpenAPI document as committed in docs/openapi.json (stable key order)."""
    import json
    import tempfile
    from pathlib import Path

    from redstone_cloud.backend import open_backend
    from redstone_cloud.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        backend = open_backend(Settings(database_url="sqlite://", data_dir=Path(tmp)))
        try:
            document = create_app(backend).openapi()
        finally:
            backend.close()
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
