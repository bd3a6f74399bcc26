"""Route-template labels: bounded whatever the path, and the metrics' route table names
routes the app really has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Mount

from redstone_cloud.api import metrics
from redstone_cloud.api.app import create_app
from redstone_cloud.api.fastpoll import POLL_PATH
from redstone_cloud.backend import open_backend
from redstone_cloud.settings import Settings


def _counted() -> dict[tuple[str, str, str], float]:
    """The process's request counter: (route, method, status class) -> requests."""
    text = generate_latest(metrics.REQUESTS).decode()
    return {
        (sample.labels["route"], sample.labels["method"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def _requests(route: str, method: str, status: str) -> float:
    return _counted().get((route, method, status), 0.0)


def _documented(label: str) -> str:
    """A route label as OpenAPI writes its template (``{target:path}`` -> ``{target}``)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", label)


def _endpoint() -> None:
    """A route's handler (never called here)."""


def test_route_label_is_the_template_or_one_label_for_no_route() -> None:
    route = APIRoute("/api/v1/vehicles/{vin}", _endpoint)
    assert metrics.route_label({"route": route}) == "/api/v1/vehicles/{vin}"
    assert metrics.route_label({}) == metrics.UNMATCHED
    assert metrics.route_label({"route": object()}) == metrics.UNMATCHED
    # Under a mount: routing appended the mount's path to root_path.
    page = APIRoute("/vehicles/{vin}", _endpoint)
    assert metrics.route_label({"route": page, "root_path": "/console"}) == (
        "/console/vehicles/{vin}"
    )
    assert metrics.route_label({"route": page, "root_path": "/api/console"}, "/api") == (
        "/console/vehicles/{vin}"
    )
    static = {"route": Mount("/static", app=_endpoint), "root_path": "/console/static"}
    assert metrics.route_label(static) == "/console/static/{path:path}"
    assert metrics.route_label({"root_path": "/console"}) == "/console/{path:path}"


def test_method_and_status_labels_are_bounded() -> None:
    assert metrics.method_label("GET") == "GET"
    assert metrics.method_label("BREW") == "other"
    assert metrics.method_label("get") == "other"
    assert [metrics.status_class(s) for s in (200, 206, 304, 404, 503)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
    ]


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        return {"name": name}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    async def files(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    app.mount("/static", files)
    app.add_middleware(metrics.RequestMetrics)
    return app


def test_middleware_counts_by_template_method_and_status_class() -> None:
    template = ("/things/{name}", "GET", "2xx")
    counted = {
        template: _requests(*template),
        ("unmatched", "GET", "4xx"): _requests("unmatched", "GET", "4xx"),
        ("unmatched", "other", "4xx"): _requests("unmatched", "other", "4xx"),
        ("/boom", "GET", "5xx"): _requests("/boom", "GET", "5xx"),
        ("/static/{path:path}", "GET", "2xx"): _requests("/static/{path:path}", "GET", "2xx"),
    }
    with TestClient(_app(), raise_server_exceptions=False) as client:
        for name in ("VIN00000000000001", "VIN00000000000002", "a b"):
            assert client.get(f"/things/{name}").status_code == 200
        assert client.get("/nowhere/VIN00000000000003").status_code == 404
        assert client.request("BREW", "/nowhere").status_code == 404
        assert client.get("/boom").status_code == 500
        assert client.get("/static/css/site.css").status_code == 200
    moved = {labels: _requests(*labels) - before for labels, before in counted.items()}
    assert moved == {
        template: 3,
        ("unmatched", "GET", "4xx"): 1,
        ("unmatched", "other", "4xx"): 1,
        ("/boom", "GET", "5xx"): 1,
        ("/static/{path:path}", "GET", "2xx"): 1,
    }
    exposed = generate_latest(metrics.REQUESTS).decode()
    assert "VIN0000" not in exposed
    assert "/static/css" not in exposed


def test_every_documented_route_is_labelled_by_its_template(tmp_path: Path) -> None:
    """A request to each path of the OpenAPI document, parameters filled in, is counted
    under that path's template (a router included with a prefix would lose it: FastAPI
    keeps the route's own path in ``scope["route"]``); the metrics' route table names
    templates that exist."""
    backend = open_backend(Settings(database_url="sqlite://", data_dir=tmp_path))
    try:
        app = create_app(backend)
        document = app.openapi()
        labels: set[str] = set()
        with TestClient(app, raise_server_exceptions=False) as client:
            for template, operations in document["paths"].items():
                path = re.sub(r"\{[^}]+\}", "x", template)
                for method in operations:
                    before = _counted()
                    client.request(method.upper(), path)
                    moved = {
                        (route, verb)
                        for (route, verb, status), value in _counted().items()
                        if value > before.get((route, verb, status), 0.0)
                    }
                    documented = {(_documented(route), verb) for route, verb in moved}
                    assert documented == {(template, method.upper())}, (template, moved)
                    labels |= {route for route, _ in moved}
    finally:
        backend.close()
    assert {POLL_PATH, metrics.MANIFEST_ROUTE, *metrics.DOWNLOAD_ROUTES} <= labels


def test_fast_path_recorder_counts_polls_or_is_off() -> None:
    assert metrics.fast_path_recorder(Settings(metrics="off")) is None
    record = metrics.fast_path_recorder(Settings())
    assert record is not None
    before = _requests(POLL_PATH, "GET", "3xx")
    record(304, 0.0001)
    assert _requests(POLL_PATH, "GET", "3xx") == before + 1


def test_an_unreadable_database_is_database_up_0_and_no_gauges(tmp_path: Path) -> None:
    backend = open_backend(Settings(database_url="sqlite://", data_dir=tmp_path))  # no tables
    try:
        families = list(metrics.DatabaseCollector(backend.sessions).collect())
    finally:
        backend.close()
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [
        ("redstone_database_up", [0])
    ]
