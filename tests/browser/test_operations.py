"""Operating the fleet from the console, in a real browser: a release manager creates a
campaign from the form, starts it, and watches it live while simulated vehicles report
over the device API (mutual TLS, as cars do); the failure threshold halts the rollout
and the open page shows it. Logs are searched and tailed live, the audit trail filtered
and exported, certificates issued and revoked. A world of its own
(tests/browser/world.py), so that what is done here never shows in the fleet tests.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from playwright.sync_api import Page, expect

from tests.browser.test_console import sign_in
from tests.browser.world import Car, World, running_world
from tests.integration.cloud.fleet import make_csr, vin_of
from tests.integration.cloud_client.backend import IMAGES

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def rollout_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("rollout")) as running:
        yield running


def goto_world(page: Page, world: World, name: str) -> None:
    """Sign in to ``world``'s console (not the session's shared one)."""
    sign_in(page, name, start=f"{world.url}/console/campaigns")


def install(car: Car, target: str) -> None:
    """The car reports ``target`` running on the ECU whose role it is for."""
    hardware, data = IMAGES[target]
    serial = f"{car.vin}-{hardware.removesuffix('-hw')}"
    car.installed[serial] = (target, len(data), hashlib.sha256(data).hexdigest(), 2)
    car.manifest()


def event(car: Car, kind: str, campaign: str, message: str = "") -> None:
    """An event of the car's TBox ECU, as the Master reports one."""
    body = {
        "kind": kind,
        "campaign": campaign,
        "ecu_serial": f"{car.vin}-tbox",
        "detail": {"message": message or kind},
    }
    response = car.client.post("/api/v1/device/events", json=body)
    assert response.status_code == 200, response.text


def offered(world: World, *vins: str) -> list[Car]:
    """The cars among ``vins`` whose poll now carries an update."""
    return [
        world.cars[v]
        for v in vins
        if world.cars[v].client.get("/api/v1/device/poll").json()["update"] is not None
    ]


def test_a_viewer_sees_campaigns_but_cannot_create_one(page: Page, rollout_world: World) -> None:
    goto_world(page, rollout_world, "vic")
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    expect(page.get_by_role("link", name="autumn")).to_be_visible()
    expect(page.get_by_role("link", name="New campaign")).to_have_count(0)
    page.goto(f"{rollout_world.url}/console/campaigns/new")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.goto(f"{rollout_world.url}/console/campaigns/autumn")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)


def test_the_form_explains_bad_input_next_to_each_field(page: Page, rollout_world: World) -> None:
    goto_world(page, rollout_world, "rita")
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name").fill("bad name!")
    page.get_by_label("Groups: cumulative share").fill("50, 40")
    page.get_by_label("These VINs").check()
    page.get_by_label("VINs (one per line").fill("NOT-A-VIN")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.locator("#name-error")).to_contain_text("letters, digits")
    expect(page.locator("#install-error")).to_contain_text("Choose a baseline")
    expect(page.locator("#groups-error")).to_contain_text("last group reaches 100")
    expect(page.locator("#vins-error")).to_contain_text("Not a VIN: NOT-A-VIN")
    expect(page.get_by_label("Name")).to_have_value("bad name!")  # what was typed is kept
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")


def test_create_start_and_watch_a_campaign_live_until_the_threshold_halts_it(
    page: Page, rollout_world: World, screenshots: Path
) -> None:
    world = rollout_world
    vins = [vin_of(2), vin_of(3)]
    goto_world(page, world, "rita")
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name").fill("winter")
    page.get_by_label("Or these packages").select_option("tbox-2.0")
    page.get_by_label("These VINs").check()
    page.get_by_label("VINs (one per line").fill("\n".join(vins))
    page.get_by_label("Groups: cumulative share").fill("50, 100")
    page.get_by_label("Next group starts when").fill("50")
    page.get_by_label("Rollout halts when").fill("50")
    page.get_by_role("button", name="Create campaign").click()

    expect(page).to_have_url(re.compile(r".*/console/campaigns/winter$"))
    expect(page.locator("#campaign-state")).to_have_text("draft")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#campaign-state")).to_have_text("running")
    progress = page.locator("#progress")
    expect(progress.locator("#group-1")).to_have_attribute("data-state", "running")
    expect(progress.locator("#group-2")).to_have_attribute("data-state", "waiting")

    # From here on the page is never reloaded: what changes arrives over the live stream.
    first = offered(world, *vins)
    assert len(first) == 1, "the first group holds half of the two vehicles"
    event(first[0], "download_started", "winter")
    expect(progress.locator("#group-1 .states")).to_contain_text("downloading 1")
    install(first[0], "tbox-2.0")  # the manifest confirms it: succeeded
    expect(progress.locator('[data-count="succeeded"]')).to_have_text("1")
    expect(progress.locator("#group-1")).to_have_attribute("data-state", "done")
    expect(progress.locator("#group-2")).to_have_attribute("data-state", "running")
    page.screenshot(path=str(screenshots / "campaign-live.png"), full_page=True)

    (second,) = offered(world, *(v for v in vins if v != first[0].vin))
    event(second, "install_failed", "winter", "flash verify failed at block 12")
    halted = progress.locator("#halted")
    expect(halted).to_contain_text("Rollout halted: group 2 had 100% failed, over its 50%")
    expect(progress.locator("#overall-state")).to_have_text("aborted")
    expect(progress.get_by_role("cell", name="flash verify failed at block 12")).to_be_visible()
    expect(progress).to_contain_text("tbox (tbox-hw)")
    assert int(progress.get_attribute("data-updates") or "0") >= 3
    page.screenshot(path=str(screenshots / "campaign-halted.png"), full_page=True)

    trail = world.ok("GET", "/api/v1/audit", params={"object_id": "winter"})
    actions = {(r["actor"], r["action"]) for r in trail}
    assert ("console:rita", "campaign.create") in actions
    assert ("console:rita", "campaign.start") in actions
    assert ("rollout", "campaign.abort") in actions


def test_pause_and_resume_from_the_page(page: Page, rollout_world: World) -> None:
    world = rollout_world
    goto_world(page, world, "rita")
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name").fill("spring-fix")
    page.get_by_label("A baseline (its packages)").select_option("sedan/spring")
    page.get_by_label("Vehicles of the model on a baseline").check()
    page.get_by_label("Model", exact=True).select_option("sedan")
    page.get_by_label("Baseline the vehicles are on now").fill("spring")
    page.get_by_label("Mon").check()
    page.get_by_label("Sun").check()
    page.get_by_label("From (HH:MM)").fill("22:00")
    page.get_by_label("Until (HH:MM)").fill("04:30")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_text("model sedan on spring")).to_be_visible()
    expect(page.get_by_text("Mon, Sun 22:00–04:30 UTC")).to_be_visible()
    for button, state in (("Start", "running"), ("Pause", "paused"), ("Resume", "running")):
        page.get_by_role("button", name=button).click()
        expect(page.locator("#campaign-state")).to_have_text(state)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#campaign-state")).to_have_text("cancelled")
    expect(page.locator(".campaign-actions")).to_have_count(0)


def test_logs_search_and_live_tail(page: Page, rollout_world: World) -> None:
    world = rollout_world
    car = world.cars[vin_of(2)]
    goto_world(page, world, "vic")
    page.goto(f"{world.url}/console/logs")
    page.get_by_label("Text contains").fill("boot ok")
    page.get_by_role("button", name="Search").click()
    lines = page.locator("#log-lines tr")
    expect(lines).to_have_count(1)  # vehicle 4's upload (tests/browser/world.py)
    expect(lines.first).to_contain_text(vin_of(4))

    page.get_by_label("Text contains").fill("")
    page.get_by_label("VIN").fill(car.vin)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#no-logs")).to_be_visible()
    for n in (1, 2):  # the car uploads while the page is open: the tail shows both lines
        upload = car.client.post(
            "/api/v1/device/logs", params={"source": "sub"}, content=f"tail line {n}\n".encode()
        )
        assert upload.status_code == 201, upload.text
        expect(lines.first).to_contain_text(f"tail line {n}")
    expect(lines).to_have_count(2)
    expect(lines.nth(1)).to_contain_text("tail line 1")  # newest first


def test_audit_filter_and_csv_export(page: Page, rollout_world: World, tmp_path: Path) -> None:
    world = rollout_world
    goto_world(page, world, "vic")
    page.goto(f"{world.url}/console/audit")
    page.get_by_label("Action").fill("campaign.start")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_contain_text("campaign.start")
    shown = rows.count()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export these records (CSV)").click()
    saved = tmp_path / "audit.csv"
    download.value.save_as(saved)
    exported = list(csv.DictReader(saved.open()))
    assert len(exported) == shown and {r["action"] for r in exported} == {"campaign.start"}

    page.get_by_label("From (YYYY-MM-DD)").fill("yesterday")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#since-error")).to_have_text("Give a date as YYYY-MM-DD.")


def test_audit_csv_shows_formula_like_text_as_text(page: Page, rollout_world: World) -> None:
    """The admin API takes any campaign name; a spreadsheet opening the export must show
    one that looks like a formula as text (OWASP "CSV injection")."""
    world = rollout_world
    name = '=HYPERLINK("http://example.invalid","open")'
    spec = {"name": name, "targeting": {"vins": [vin_of(1)]}, "packages": ["tbox-2.0"]}
    world.ok("POST", "/api/v1/campaigns", json=spec)
    goto_world(page, world, "vic")
    response = page.request.get(f"{world.url}/console/audit.csv?action=campaign.create")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(response.text())))
    assert "'" + name in [r["object_id"] for r in exported]
    assert name not in [r["object_id"] for r in exported]


def test_pki_issue_and_revoke_bite_at_once(
    page: Page, rollout_world: World, screenshots: Path
) -> None:
    world = rollout_world
    car = world.cars[vin_of(1)]  # in no campaign here: revoking it disturbs no other test
    goto_world(page, world, "vic")
    page.goto(f"{world.url}/console/pki")
    expect(page.get_by_role("heading", name="Device certificates")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Revoke"))).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()

    goto_world(page, world, "ada")
    page.goto(f"{world.url}/console/pki")
    page.get_by_label("VIN", exact=True).first.fill(car.vin)
    page.get_by_role("button", name="Show").click()
    row = page.locator("table.certs tbody tr").first
    expect(row).to_contain_text("valid")

    _key, csr = make_csr(car.vin)
    page.locator("#issue-vin").fill(car.vin)
    page.get_by_label("Certificate signing request (PEM)").fill("not a CSR")
    page.get_by_role("button", name="Issue certificate").click()
    expect(page.locator("#csr_pem-error")).to_contain_text("Paste a PEM")
    page.get_by_label("Certificate signing request (PEM)").fill(csr.decode())
    page.get_by_role("button", name="Issue certificate").click()
    expect(page.locator("#issued-pem")).to_contain_text("BEGIN CERTIFICATE")
    page.screenshot(path=str(screenshots / "pki.png"), full_page=True)

    issued = x509.load_pem_x509_certificate(page.locator("#issued-pem").inner_text().encode())
    rows = page.locator("table.certs tbody tr")
    expect(rows).to_have_count(2)
    serials = [str(r.get_attribute("id")).removeprefix("cert-") for r in rows.all()]
    (in_use,) = [s for s in serials if s != format(issued.serial_number, "x")]

    # Revoke the certificate the car speaks with: its very next request is refused.
    assert car.client.get("/api/v1/device/poll").status_code == 200
    page.locator(f"#cert-{in_use} select").select_option("key compromise")
    page.locator(f"#cert-{in_use}").get_by_role("button", name=re.compile("Revoke")).click()
    expect(page.locator(f"#cert-{in_use}")).to_contain_text("revoked (key compromise)")
    assert car.client.get("/api/v1/device/poll").status_code in (401, 403)
    trail = world.ok("GET", "/api/v1/audit", params={"action": "pki.revoke"})
    assert [r["actor"] for r in trail] == ["console:ada"]


def test_a_release_manager_uploads_a_package_and_campaigns_it(
    page: Page, rollout_world: World, tmp_path: Path, screenshots: Path
) -> None:
    world = rollout_world
    image = tmp_path / "tbox-3.0.img"
    image.write_bytes(b"tbox image three " * 300)
    goto_world(page, world, "rita")
    page.goto(f"{world.url}/console/packages")
    page.get_by_label("Name").fill("tbox")
    page.get_by_label("Version").fill("3.0/../x")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#file-error")).to_have_text("Choose the image file to upload.")
    expect(page.locator("#version-error")).to_contain_text("no '..'")

    page.get_by_label("Image file").set_input_files(str(image))
    page.get_by_label("Version").fill("3.0")
    page.get_by_label("Hardware ids (comma-separated)").fill("tbox-hw")
    page.get_by_label("Release counter (anti-rollback)").fill("3")
    page.get_by_role("button", name="Upload").click()
    row = page.locator("#package-tbox-3\\.0")
    expect(row).to_contain_text("tbox-hw")
    expect(row.locator("[data-bytes]")).to_have_attribute("data-bytes", str(image.stat().st_size))
    expect(page.locator("table.deltas")).to_contain_text("tbox-2.0")  # a delta is queued
    page.screenshot(path=str(screenshots / "packages.png"), full_page=True)
    listed = world.ok("GET", "/api/v1/packages", params={"name": "tbox"})
    assert {p["target"] for p in listed} >= {"tbox-3.0"}

    page.goto(f"{world.url}/console/campaigns/new")
    page.get_by_label("Name").fill("tbox-three")
    page.get_by_label("Or these packages").select_option("tbox-3.0")
    page.get_by_label("Every vehicle of the model").check()
    page.get_by_label("Model", exact=True).select_option("sedan")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_text("tbox-3.0", exact=True)).to_be_visible()
    trail = world.ok("GET", "/api/v1/audit", params={"action": "package.upload"})
    assert [r["actor"] for r in trail if r["object_id"] == "tbox-3.0"] == ["console:rita"]


def test_campaign_and_fleet_analytics_show_their_numbers_as_charts_tables_and_csv(
    page: Page, rollout_world: World, screenshots: Path
) -> None:
    """Runs after the live test: "winter" has one vehicle succeeded and one failed."""
    world = rollout_world
    winners = [
        c
        for c in (world.cars[vin_of(2)], world.cars[vin_of(3)])
        if c.installed.get(f"{c.vin}-tbox", ("",))[0] == "tbox-2.0"
    ]
    if not winners:
        pytest.skip("needs the live campaign test of this module to have run first")
    winner = winners[0]
    report = {
        "campaign": "winter",
        "outcome": "succeeded",
        "ecus": [
            {"serial": f"{winner.vin}-tbox", "bytes_downloaded": 1200, "bytes_saved": 1800},
            {"serial": f"{winner.vin}-adas", "bytes_downloaded": "lots", "bytes_saved": -5},
        ],
    }
    for _ in range(2):  # a report sent twice counts once
        body = {"kind": "campaign_report", "campaign": "winter", "detail": {"report": report}}
        assert winner.client.post("/api/v1/device/events", json=body).status_code == 200

    goto_world(page, world, "vic")
    page.goto(f"{world.url}/console/campaigns/winter")
    page.locator("main").get_by_role("link", name="Analytics").click()
    expect(page.get_by_role("heading", name="Analytics: winter")).to_be_visible()
    expect(page.locator("#reports")).to_have_text("1")
    expect(page.locator("#downloaded")).to_have_attribute("data-bytes", "1200")
    expect(page.locator("#saved")).to_contain_text("(60% of full images)")
    expect(page.locator("#chart-success .chart")).to_have_attribute("data-drawn", "2")
    last = page.locator("#chart-success tbody tr").last
    expect(last.locator("td")).to_have_text(["1", "1"])  # in the end: 1 succeeded, 1 failed
    expect(page.locator("#chart-reasons")).to_contain_text("flash verify failed at block 12")
    expect(page.locator("#chart-install tbody tr")).to_have_count(7)
    page.screenshot(path=str(screenshots / "campaign-analytics.png"), full_page=True)

    response = page.request.get(f"{world.url}/console/campaigns/winter/analytics/success.csv")
    rows = list(csv.reader(io.StringIO(response.text())))
    assert rows[0] == ["time", "succeeded", "failed"] and rows[-1][1:] == ["1", "1"]
    missing = page.request.get(f"{world.url}/console/campaigns/winter/analytics/nothing.csv")
    assert missing.status == 404

    page.get_by_role("navigation").get_by_role("link", name="Analytics").click()
    expect(page.get_by_role("heading", name="Fleet analytics")).to_be_visible()
    tbox = page.locator("figure", has_text="Version adoption: tbox")
    expect(tbox.locator(".chart")).to_have_attribute("data-drawn", re.compile(r"[1-9]"))
    expect(tbox.locator("thead")).to_contain_text("tbox-2.0")
    adoption = page.request.get(f"{world.url}/console/analytics/adoption.csv")
    assert adoption.text().splitlines()[0] == "role,time,version,ecus"
    assert ",tbox-2.0," in adoption.text()
