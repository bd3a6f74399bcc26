"""``GET /metrics``: what operators graph and alert on, in the Prometheus text format.

Two kinds of numbers (docs/operations.md §5 names each metric):

* Counters, counted as answers go out: every request by route *template*
  (``/api/v1/vehicles/{vin}``, never the VIN: one series per route, not per
  vehicle), method and status class, with its latency; and, read from the same
  answers, device polls, manifests accepted or refused, downloads and the bytes
  they sent. :class:`RequestMetrics` counts inside the app; the poll fast path
  answers most polls before the app (``fastpoll.py``) and counts them with
  :func:`fast_path_recorder`, a few increments on label sets bound once.
* Gauges read from the database at scrape time (:class:`DatabaseCollector`):
  delta jobs and campaigns by state, each active campaign's assignments by
  state, and its running group's failure ratio next to the error threshold
  that aborts it. Nothing of these is kept in the process.

Counters belong to the process that counted them. With several ``serve``
processes on one socket a scrape reaches any one of them, so set
``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, before the processes start):
each process then writes its counters to a file there and every scrape sums
all of them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker
from starlette.routing import Mount

from redstone_cloud.api.common import bearer_holder
from redstone_cloud.api.fastpoll import POLL_PATH
from redstone_cloud.backend import Backend
from redstone_cloud.db.models import Assignment, Campaign, DeltaJob, RolloutGroup
from redstone_cloud.services import campaigns, deltas
from redstone_cloud.settings import Admin, MetricsReader, Settings

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
TEXT_FORMAT = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus since 2.0 reads (names here need no UTF-8 escaping)."""
UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404, a stray scanner): one series."""
MANIFEST_ROUTE = "/api/v1/device/manifest"
DOWNLOAD_ROUTES = {
    "/api/v1/device/targets/{target:path}": "device",
    "/api/v1/targets/{target}": "admin",
    "/api/v1/vehicles/{vin}/bundle": "bundle",
}
"""Route template -> the ``kind`` label of its downloads."""
DOWNLOAD_STATUSES = (200, 206, 307)
"""What counts as a download: whole, a range, a redirect to the object store."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "redstone_http_requests",
    "HTTP requests answered, by route template, method and status class (2xx...).",
    ["route", "method", "status"],
    registry=None,
)
LATENCY = Histogram(
    "redstone_http_request_duration_seconds",
    "Time from a request reaching the app to its last byte sent, by route template.",
    ["route", "method"],
    buckets=_BUCKETS,
    registry=None,
)
POLLS = Counter(
    "redstone_device_polls",
    "Device polls answered 200 or 304, by who answered (fast_path or route).",
    ["answered_by", "status"],
    registry=None,
)
MANIFESTS = Counter(
    "redstone_device_manifests",
    "Vehicle manifests: accepted (200) or refused (4xx: signature, replay, size, auth).",
    ["result"],
    registry=None,
)
DOWNLOADS = Counter(
    "redstone_downloads",
    "Package and bundle downloads answered 200, 206 or 307 (object-store redirect).",
    ["kind", "status"],
    registry=None,
)
DOWNLOAD_BYTES = Counter(
    "redstone_download_bytes",
    "Body bytes of downloads sent by this API (a redirect's bytes come from the store).",
    ["kind"],
    registry=None,
)
_COUNTERS = (REQUESTS, LATENCY, POLLS, MANIFESTS, DOWNLOADS, DOWNLOAD_BYTES)

# Known label sets start at 0, so that rate() and "no polls" alerts see them at once.
for _by in ("fast_path", "route"):
    for _status in ("200", "304"):
        POLLS.labels(_by, _status)
for _result in ("accepted", "refused"):
    MANIFESTS.labels(_result)
for _kind in DOWNLOAD_ROUTES.values():
    DOWNLOAD_BYTES.labels(_kind)
    for _code in DOWNLOAD_STATUSES:
        DOWNLOADS.labels(_kind, str(_code))


def route_label(scope: dict[str, Any], root_path: str = "") -> str:
    """The template of the route that answered, once routing has filled in ``scope``.

    Under a mounted app (the console) the mount's path comes first: routing appends it
    to ``scope["root_path"]``, and ``root_path`` is what that held before routing. A
    mount with no route of its own for the request (static files, its 404) is the
    mount's path and ``/{path:path}``. Mount paths are literal in this app, so the
    label stays a template.
    """
    mounted = str(scope.get("root_path", ""))[len(root_path) :]
    route = scope.get("route")
    path = None if isinstance(route, Mount) else getattr(route, "path", None)
    if isinstance(path, str):
        return mounted + path
    return f"{mounted}/{{path:path}}" if mounted else UNMATCHED


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def _count(route: str, method: str, status: int, seconds: float) -> None:
    method = method_label(method)
    REQUESTS.labels(route, method, status_class(status)).inc()
    LATENCY.labels(route, method).observe(seconds)
    if route == POLL_PATH and status in (200, 304):
        POLLS.labels("route", str(status)).inc()
    elif route == MANIFEST_ROUTE and status < 500:
        MANIFESTS.labels("accepted" if status == 200 else "refused").inc()
    elif route in DOWNLOAD_ROUTES and status in DOWNLOAD_STATUSES:
        DOWNLOADS.labels(DOWNLOAD_ROUTES[route], str(status)).inc()


class RequestMetrics:
    """ASGI middleware inside the app: count and time each HTTP request once it ends.

    Download bytes are counted as each chunk goes out, so a long download shows as
    bytes per second while it runs, and an interrupted one counts what it sent.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 500  # what the client gets if the app raises before answering
        count_bytes: Callable[[float], None] | None = None

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status, count_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                kind = DOWNLOAD_ROUTES.get(route_label(scope, root_path))
                if kind is not None and status in (200, 206):
                    count_bytes = DOWNLOAD_BYTES.labels(kind).inc
            elif count_bytes is not None and message["type"] == "http.response.body":
                count_bytes(len(message.get("body", b"")))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = route_label(scope, root_path)
            _count(route, scope["method"], status, time.perf_counter() - start)


def fast_path_recorder(settings: Settings) -> Callable[[int, float], None] | None:
    """What the poll fast path calls with (status, seconds) for each poll it answers;
    None when metrics are off."""
    if settings.metrics == "off":
        return None
    latency = LATENCY.labels(POLL_PATH, "GET")
    bound = {
        status: (
            REQUESTS.labels(POLL_PATH, "GET", status_class(status)).inc,
            POLLS.labels("fast_path", str(status)).inc,
        )
        for status in (200, 304)
    }

    def record(status: int, seconds: float) -> None:
        count_request, count_poll = bound[status]
        count_request()
        count_poll()
        latency.observe(seconds)

    return record


# --- gauges from the database -------------------------------------------------------------------


def _by_state(session: Session, column: InstrumentedAttribute[str]) -> Tally[str]:
    return Tally(dict(session.execute(select(column, func.count()).group_by(column)).all()))


def _with_known(known: Sequence[str], found: Tally[str]) -> list[str]:
    return [*known, *sorted(set(found) - set(known))]


def _state_gauge(name: str, text: str, known: Sequence[str], counts: Tally[str]) -> Metric:
    gauge = GaugeMetricFamily(name, text, labels=["state"])
    for state in _with_known(known, counts):
        gauge.add_metric([state], counts[state])
    return gauge


def _campaign_gauges(session: Session) -> list[Metric]:
    """Each active campaign's assignments by state, and its running group's failure ratio
    beside the error threshold at which the rollout engine aborts the campaign."""
    active = Campaign.state.in_(campaigns.ACTIVE_CAMPAIGN)
    counts: dict[tuple[str, int], Tally[str]] = {}
    for name, group, state, count in session.execute(
        select(Campaign.name, Assignment.group_position, Assignment.state, func.count())
        .join(Assignment, Assignment.campaign_id == Campaign.id)
        .where(active)
        .group_by(Campaign.name, Assignment.group_position, Assignment.state)
    ):
        counts.setdefault((name, group), Tally())[state] = count
    by_campaign: dict[str, Tally[str]] = {}
    for (name, _group), tally in counts.items():
        by_campaign.setdefault(name, Tally()).update(tally)
    assignments = GaugeMetricFamily(
        "redstone_campaign_assignments",
        "Vehicles of each running or paused campaign by assignment state.",
        labels=["campaign", "state"],
    )
    for name, tally in sorted(by_campaign.items()):
        for state in _with_known(campaigns.ASSIGNMENT_STATES, tally):
            assignments.add_metric([name, state], tally[state])
    failure = GaugeMetricFamily(
        "redstone_campaign_group_failure_ratio",
        "Failed share (0..1) of the vehicles of an active campaign's running group.",
        labels=["campaign", "group"],
    )
    threshold = GaugeMetricFamily(
        "redstone_campaign_group_error_threshold_ratio",
        "The failed share (0..1) at which the rollout engine aborts that campaign.",
        labels=["campaign", "group"],
    )
    for name, group, error_threshold in session.execute(
        select(Campaign.name, RolloutGroup.position, RolloutGroup.error_threshold)
        .join(RolloutGroup, RolloutGroup.campaign_id == Campaign.id)
        .where(active, RolloutGroup.state == "running")
        .order_by(Campaign.name)
    ):
        tally = counts.get((name, group), Tally())
        total = sum(tally.values())
        failure.add_metric([name, str(group)], tally["failed"] / total if total else 0.0)
        threshold.add_metric([name, str(group)], error_threshold / 100)
    return [assignments, failure, threshold]


def database_gauges(session: Session) -> list[Metric]:
    """Every gauge read from the database, a few grouped queries in all."""
    return [
        _state_gauge(
            "redstone_delta_jobs",
            "Delta jobs by state (the queue that 'deltas list' shows).",
            deltas.JOB_STATES,
            _by_state(session, DeltaJob.state),
        ),
        _state_gauge(
            "redstone_campaigns",
            "Campaigns by state.",
            campaigns.CAMPAIGN_STATES,
            _by_state(session, Campaign.state),
        ),
        *_campaign_gauges(session),
    ]


class DatabaseCollector:
    """Reads :func:`database_gauges` at each scrape; ``redstone_database_up`` says
    whether it could (the counters are served either way)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def describe(self) -> Iterable[Metric]:
        return []  # no query when registered; names are checked at scrape time

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("redstone_database_up", "1 if this scrape could read the database.")
        try:
            with self._sessions() as session:
                gauges = database_gauges(session)
        except SQLAlchemyError as exc:
            log.warning("metrics: database gauges unavailable: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [*gauges, up]


class Exposition:
    """The text one scrape returns: this process's counters (or, in multiprocess mode,
    every process's) and the database gauges."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._database = DatabaseCollector(sessions)
        self._registry = CollectorRegistry()
        for collector in (*_COUNTERS, PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self._registry.register(collector)
        self._registry.register(self._database)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated
            registry.register(self._database)
            return generate_latest(registry)
        return generate_latest(self._registry)


def install(app: FastAPI, backend: Backend) -> None:
    """Add ``GET /metrics`` and the request counting to ``app`` (unless ``metrics = "off"``);
    call it after the other middleware, so that what they refuse is counted too."""
    mode = backend.settings.metrics
    if mode == "off":
        return
    exposition = Exposition(backend.sessions)
    settings = backend.settings
    readers: list[Admin | MetricsReader] = [*settings.admins, *settings.metrics_readers]

    def scrape(request: Request) -> Response:  # a thread of its own: the gauges query
        if mode == "admin":
            bearer_holder(readers, request.headers.get("authorization"), "metrics")
        return Response(exposition.render(), headers={"Content-Type": TEXT_FORMAT})

    app.add_api_route(METRICS_PATH, scrape, methods=["GET"], include_in_schema=False)
    app.add_middleware(RequestMetrics)
