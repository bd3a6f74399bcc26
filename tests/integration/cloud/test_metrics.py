"""``GET /metrics`` of a real ``serve``: the counters move by exactly what was done, routes
are labelled by template, the gauges are the database's at scrape time, several processes
add up in multiprocess mode, and the Grafana dashboard and alert rules in docs/ name only
metrics and labels a real scrape has."""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest, sign_vehicle_manifest
from redstone_cloud.api.app import create_app
from redstone_cloud.api.metrics import RequestMetrics
from redstone_cloud.backend import open_backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.models import DeltaJob
from redstone_cloud.settings import load_settings, token_digest
from tests.integration.cloud.conftest import make_settings
from tests.integration.cloud.fleet import ADMIN, ADMIN_TOKEN
from tests.integration.cloud.server import prepare_tls_server, serving
from tests.integration.cloud_client.backend import IMAGES, Backend, Car, serving_backend

DOCS = Path(__file__).parents[3] / "docs"
CAMPAIGN = "metrics-rollout"
POLL = "/api/v1/device/poll"


@dataclass(frozen=True)
class Scrape:
    """One /metrics answer, parsed: (sample name, labels) -> value."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name, frozenset(sample.labels.items())] = sample.value
        return cls(samples)

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample, labels in self.samples if sample == name]

    def moved(self, before: Scrape, name: str, **labels: str) -> float:
        return self.get(name, **labels) - before.get(name, **labels)


def scrape(client: httpx.Client, token: bool = True) -> Scrape:
    answer = client.get("/metrics", headers=ADMIN if token else {})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape.parse(answer.text)


def _tune(config: Path, **values: object) -> None:
    lines = config.read_text().splitlines()
    extra = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    config.write_text("\n".join([lines[0], *extra, *lines[1:]]) + "\n")


def _device(cloud: Backend, car: Car) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(cloud.ca))
    context.load_cert_chain(car.cert, car.key)
    return httpx.Client(base_url=cloud.url, verify=context)


def _manifest(car: Car, nonce: str) -> bytes:
    """A signed vehicle manifest: every ECU still runs its factory image."""
    factory = hashlib.sha256(b"factory").hexdigest()
    envelopes = {
        serial: sign_ecu_manifest(
            EcuManifest(serial, "factory.img", 7, factory, 0, nonce=nonce), signer
        )
        for serial, signer in car.signers.items()
    }
    return sign_vehicle_manifest(car.vin, car.primary, nonce, envelopes, car.signers[car.primary])


@dataclass(frozen=True)
class Run:
    before: Scrape
    after: Scrape
    cars: tuple[Car, Car]


def _exercise(cloud: Backend) -> Run:
    """Two vehicles in one running campaign (abort at 60 % failed) and a queued delta job;
    then, between two scrapes: four polls, two director reads, a manifest and its replay,
    a failure event, two downloads, two admin reads, one unknown path, one refused scrape."""
    a, b = cloud.register(1), cloud.register(2)
    spec = {
        "name": CAMPAIGN,
        "targeting": {"vins": [a.vin, b.vin]},
        "packages": ["tbox-2.0", "adas-2.0"],
        "groups": [{"percent": 100, "error_threshold": 60}],
    }
    cloud.ok("POST", "/api/v1/campaigns", json=spec)
    cloud.ok("POST", f"/api/v1/campaigns/{CAMPAIGN}/start")
    # Hardware no model lists yet: its delta is queued (one only UDS ECUs take is not).
    for version, data in (("1.0", b"body one " * 100), ("2.0", b"body two " * 100)):
        cloud.ok(
            "PUT",
            f"/api/v1/packages/body/{version}",
            params={"hardware_id": "body-hw"},
            content=data,
        )

    before = scrape(cloud.admin)
    with _device(cloud, a) as car_a, _device(cloud, b) as car_b:
        first = car_a.get(POLL)  # the offer: the full route
        assert first.status_code == 200, first.text
        etag = {"If-None-Match": first.headers["etag"]}
        assert car_a.get(POLL, headers=etag).status_code == 304  # the fast path
        assert car_a.get(POLL).status_code == 200  # the fast path, whole answer
        assert car_b.get(POLL).status_code == 200  # B's offer: the full route
        for car, client in ((a, car_a), (b, car_b)):
            assert client.get(f"/uptane/director/{car.vin}/root.json").status_code == 200
        download = car_b.get("/api/v1/device/targets/tbox-2.0")
        assert download.content == IMAGES["tbox-2.0"][1]

        nonce = car_a.post("/api/v1/device/nonce").json()["nonce"]
        manifest = _manifest(a, nonce)
        assert car_a.post("/api/v1/device/manifest", content=manifest).status_code == 200
        assert car_a.post("/api/v1/device/manifest", content=manifest).status_code == 409
        failed = car_a.post(
            "/api/v1/device/events", json={"kind": "install_failed", "campaign": CAMPAIGN}
        )
        assert failed.json()["assignment"] == "failed", failed.text

    for car in (a, b):
        cloud.ok("GET", f"/api/v1/vehicles/{car.vin}")
    part = cloud.admin.get("/api/v1/targets/adas-2.0", headers={"Range": "bytes=0-99"})
    assert (part.status_code, len(part.content)) == (206, 100)
    assert cloud.admin.get("/no/such/route").status_code == 404
    assert cloud.admin.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    return Run(before, scrape(cloud.admin), (a, b))


def test_counters_move_by_what_was_done_and_gauges_are_the_databases(
    database_url: str, tmp_path: Path
) -> None:
    files = prepare_tls_server(tmp_path, database_url, token_digest(ADMIN_TOKEN))
    _tune(files.config, delta_interval_s=0)  # the delta job stays queued
    with serving_backend(files, tmp_path) as cloud:
        run = _exercise(cloud)
        before, after = run.before, run.after

        def moved(name: str, **labels: str) -> float:
            return after.moved(before, name, **labels)

        polls = "redstone_device_polls_total"
        assert moved(polls, answered_by="route", status="200") == 2
        assert moved(polls, answered_by="fast_path", status="304") == 1
        assert moved(polls, answered_by="fast_path", status="200") == 1
        assert moved(polls, answered_by="route", status="304") == 0
        requests = "redstone_http_requests_total"
        assert moved(requests, route=POLL, method="GET", status="2xx") == 3
        assert moved(requests, route=POLL, method="GET", status="3xx") == 1
        latency = "redstone_http_request_duration_seconds_count"
        assert moved(latency, route=POLL, method="GET") == 4

        manifests = "redstone_device_manifests_total"
        assert (moved(manifests, result="accepted"), moved(manifests, result="refused")) == (1, 1)
        manifest = "/api/v1/device/manifest"
        assert moved(requests, route=manifest, method="POST", status="2xx") == 1
        assert moved(requests, route=manifest, method="POST", status="4xx") == 1

        downloads, sent = "redstone_downloads_total", "redstone_download_bytes_total"
        assert moved(downloads, kind="device", status="200") == 1
        assert moved(sent, kind="device") == len(IMAGES["tbox-2.0"][1])
        assert moved(downloads, kind="admin", status="206") == 1
        assert moved(sent, kind="admin") == 100
        assert moved(downloads, kind="bundle", status="200") == 0

        # Two VINs, one route label each: templates, never the raw path.
        director = "/uptane/director/{vin}/{filename}"
        assert moved(requests, route=director, method="GET", status="2xx") == 2
        vehicle = "/api/v1/vehicles/{vin}"
        assert moved(requests, route=vehicle, method="GET", status="2xx") == 2
        assert moved(requests, route="unmatched", method="GET", status="4xx") == 1
        assert moved(requests, route="/metrics", method="GET", status="4xx") == 1
        assert moved(requests, route="/metrics", method="GET", status="2xx") == 1  # `before`
        vins = {car.vin for car in run.cars}
        for labels in after.series(requests):
            assert not any(vin in labels["route"] for vin in vins), labels
            assert labels["route"] == "unmatched" or labels["route"].startswith("/"), labels

        # Gauges: what the database holds when scraped.
        assert after.get("redstone_database_up") == 1
        assert after.get("redstone_campaigns", state="running") == 1
        assert (
            sum(
                after.get("redstone_campaigns", state=s["state"])
                for s in after.series("redstone_campaigns")
            )
            == 1
        )
        assignments = "redstone_campaign_assignments"
        assert after.get(assignments, campaign=CAMPAIGN, state="failed") == 1
        assert after.get(assignments, campaign=CAMPAIGN, state="offered") == 1
        group = {"campaign": CAMPAIGN, "group": "0"}
        assert after.get("redstone_campaign_group_failure_ratio", **group) == 0.5
        assert after.get("redstone_campaign_group_error_threshold_ratio", **group) == 0.6
        jobs = cloud.ok("GET", "/api/v1/deltas")
        queued = sum(job["state"] == "pending" for job in jobs)
        assert queued >= 1
        assert after.get("redstone_delta_jobs", state="pending") == queued

        backend = open_backend(files.settings)
        with transaction(backend.sessions) as session:
            session.execute(update(DeltaJob).values(state="failed", error="test"))
        backend.close()
        now = scrape(cloud.admin)
        assert now.get("redstone_delta_jobs", state="pending") == 0
        assert now.get("redstone_delta_jobs", state="failed") == len(jobs)


_NAME = re.compile(r"\b(redstone_[a-z0-9_]+)(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _expressions() -> list[str]:
    dashboard = json.loads((DOCS / "grafana" / "redstone-cloud.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    rules = yaml.safe_load((DOCS / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return exprs


@pytest.mark.parametrize("database_kind", ["sqlite"])
def test_dashboard_and_alert_rules_name_only_scraped_metrics_and_labels(
    database_url: str, tmp_path: Path
) -> None:
    files = prepare_tls_server(tmp_path, database_url, token_digest(ADMIN_TOKEN))
    with serving_backend(files, tmp_path) as cloud:
        after = _exercise(cloud).after
    labels: dict[str, set[str]] = {}
    for name, label_set in after.samples:
        labels.setdefault(name, set()).update(key for key, _ in label_set)
    exprs = _expressions()
    assert exprs
    for expr in exprs:
        used = _NAME.findall(expr)
        assert used, f"no redstone metric in {expr!r}"
        names = set()
        for name, matchers in used:
            assert name in labels, f"{name} (in {expr!r}) is not in a real scrape"
            names.add(name)
            for label in _MATCHER.findall(matchers):
                assert label in labels[name], f"{name} has no label {label!r} ({expr!r})"
        known = set().union(*(labels[n] for n in names)) | {"le"}
        for grouping in _GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                assert label in known, f"{label!r} grouped on in {expr!r} is no label of {names}"


def test_dashboard_and_alert_rules_are_well_formed() -> None:
    dashboard = json.loads((DOCS / "grafana" / "redstone-cloud.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
    rules = yaml.safe_load((DOCS / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert all(group["name"] for group in rules["groups"])
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str)
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    names = {rule["alert"] for rule in alerts}
    assert {
        "RedstoneCampaignFailureRateAboveThreshold",
        "RedstoneDeltaJobsFailing",
        "RedstoneServerErrors",
        "RedstoneNoPolls",
    } <= names


@pytest.mark.parametrize("database_kind", ["sqlite"])
def test_several_processes_add_up_in_multiprocess_mode(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = prepare_tls_server(tmp_path, database_url)
    _tune(files.config, metrics="open")
    (tmp_path / "prometheus").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    context = ssl.create_default_context(cafile=str(files.ca_file))
    route = {"route": "/api/v1/packages", "method": "GET", "status": "4xx"}
    with (
        serving(files.config, files.ca_file) as one,
        httpx.Client(base_url=one.url, verify=context) as first,
    ):
        with (
            serving(files.config, files.ca_file) as two,
            httpx.Client(base_url=two.url, verify=context) as second,
        ):
            for client, times in ((first, 3), (second, 5)):
                for _ in range(times):
                    assert client.get("/api/v1/packages").status_code == 401
            for client in (first, second):
                both = scrape(client, token=False)
                assert both.get("redstone_http_requests_total", **route) == 8
                assert both.series("redstone_database_up") == [{}]
        # A process that stopped still counts: the sum never goes back.
        assert scrape(first, token=False).get("redstone_http_requests_total", **route) == 8


def test_metrics_open_and_off(database_url: str, tmp_path: Path) -> None:
    for mode, status in (("open", 200), ("off", 404), ("admin", 401)):
        backend = open_backend(make_settings(database_url, tmp_path / mode, metrics=mode))
        try:
            app = create_app(backend)
            counting = RequestMetrics in [getattr(m, "cls", None) for m in app.user_middleware]
            assert counting == (mode != "off")
            with TestClient(app) as client:
                assert client.get("/metrics").status_code == status, mode
        finally:
            backend.close()


def test_a_metrics_reader_token_reads_metrics_and_nothing_else(
    database_url: str, tmp_path: Path
) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "redstone_cloud", "admin", "token", "prometheus", "--metrics"],
        check=True,
        capture_output=True,
        text=True,
    )
    entry = json.loads(printed.stdout)
    config = tmp_path / "cloud.toml"
    config.write_text(
        f'[cloud]\ndatabase_url = "{database_url}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[[cloud.admins]]\nname = "alice"\ntoken_sha256 = "{token_digest(ADMIN_TOKEN)}"\n'
        + entry["config"]
        + "\n"
    )
    backend = open_backend(load_settings(config))
    reader = {"Authorization": f"Bearer {entry['token']}"}
    try:
        with TestClient(create_app(backend)) as client:
            assert client.get("/metrics", headers=reader).status_code == 200
            assert client.get("/metrics", headers=ADMIN).status_code == 200
            assert client.get("/metrics").status_code == 401
            refused = client.get("/api/v1/packages", headers=reader)
            assert refused.status_code == 401
            assert refused.json() == {"error": "admin token not recognised"}
            assert client.get("/api/v1/packages", headers=ADMIN).status_code == 200
    finally:
        backend.close()
