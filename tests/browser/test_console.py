"""The fleet console in a real browser against a real server (tests/browser/world.py)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.world import MAX_FAILURES, PASSWORD, World
from tests.integration.cloud.fleet import vin_of

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SIGNED_OUT = re.compile(r".*/console/login\?next=.*")


def sign_in(page: Page, name: str, password: str = PASSWORD, start: str = "/console/fleet") -> None:
    page.goto(start)
    expect(page).to_have_url(SIGNED_OUT)
    submit_credentials(page, name, password)


def submit_credentials(page: Page, name: str, password: str) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_and_see_the_fleet(page: Page, context: BrowserContext, screenshots: Path) -> None:
    sign_in(page, "ada")
    expect(page).to_have_url(re.compile(r".*/console/fleet$"))
    expect(page.get_by_role("heading", name="Fleet", exact=True)).to_be_visible()
    expect(page.locator("#vehicles .count")).to_have_text("4 vehicles")
    expect(page.get_by_role("link", name="Users")).to_be_visible()  # ada is an admin
    cookie = next(c for c in context.cookies() if c["name"] == "redstone_console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/console"
    page.screenshot(path=str(screenshots / "fleet.png"), full_page=True)
    page.set_viewport_size({"width": 768, "height": 1024})
    expect(page.get_by_role("button", name="Filter")).to_be_visible()
    page.screenshot(path=str(screenshots / "fleet-tablet.png"), full_page=True)


def test_wrong_password_and_unknown_user_get_the_same_message(page: Page) -> None:
    sign_in(page, "vic", "not the password")
    alert = page.get_by_role("alert")
    expect(alert).to_have_text("Wrong user name or password.")
    submit_credentials(page, "nobody", "not the password")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    # The target is kept for the next try.
    expect(page.locator('input[name="next"]')).to_have_value("/console/fleet")
    submit_credentials(page, "vic", PASSWORD)
    expect(page).to_have_url(re.compile(r".*/console/fleet$"))


def test_throttling_after_repeated_failures(page: Page) -> None:
    sign_in(page, "tom", "wrong-1")
    for n in range(2, MAX_FAILURES + 1):
        submit_credentials(page, "tom", f"wrong-{n}")
        expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    submit_credentials(page, "tom", PASSWORD)  # the right password, but locked now
    expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins: try again in")
    expect(page.get_by_role("link", name="Fleet")).to_have_count(0)  # still signed out


@pytest.mark.parametrize("name", ["vic", "rita"])
def test_only_admins_reach_the_users_page(page: Page, name: str) -> None:
    sign_in(page, name)
    expect(page.get_by_role("heading", name="Fleet", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    response = page.goto("/console/users")
    assert response is not None and response.status == 403
    expect(page.locator("#error-message")).to_contain_text("needs the admin role")
    expect(page.get_by_role("button", name="Add user")).to_have_count(0)
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token
    posted = page.request.post(
        "/console/users",
        form={"csrf_token": token, "name": "mallory", "role": "admin", "password": PASSWORD},
        max_redirects=0,
    )
    assert posted.status == 403


def test_post_without_csrf_token_is_refused(page: Page, world: World) -> None:
    sign_in(page, "ada", start="/console/users")
    form = {"name": "no-token", "role": "viewer", "password": PASSWORD}
    refused = page.request.post("/console/users", form=form, max_redirects=0)
    assert refused.status == 403
    assert "CSRF token is missing or wrong" in refused.text()
    forged = page.request.post(
        "/console/users", form={**form, "csrf_token": "0" * 64}, max_redirects=0
    )
    assert forged.status == 403
    assert "no-token" not in world.cli("--json", "user", "list")
    # The same request with the page's own token goes through (the refusal was the token).
    page.get_by_label("User name", exact=True).fill("with-token")
    page.get_by_label("Password (at least 8 characters)").fill(PASSWORD)
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("row", name=re.compile("with-token"))).to_be_visible()
    audit = world.ok("GET", "/api/v1/audit", params={"actor": "console:ada"})
    assert any(
        r["action"] == "console.user-add" and r["object_id"] == "with-token" for r in audit
    ), audit


def test_users_page_explains_bad_input_next_to_the_field(page: Page) -> None:
    sign_in(page, "ada", start="/console/users")
    page.get_by_label("User name", exact=True).fill("Bad Name")
    page.get_by_label("Password (at least 8 characters)").fill("short")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator("#new-name-error")).to_contain_text("lower-case letters")
    expect(page.locator("#new-password-error")).to_contain_text("8 to 1024")


def test_expired_session_returns_to_sign_in_and_then_to_the_page(page: Page, world: World) -> None:
    sign_in(page, "vic")
    target = f"/console/vehicles/{vin_of(1)}"
    page.goto(target)
    expect(page.get_by_role("heading", name=f"Vehicle {vin_of(1)}")).to_be_visible()
    # An hour idle (the default idle expiry is 30 minutes): move the session's clock.
    with sqlite3.connect(world.database) as db:
        db.execute(
            "UPDATE console_sessions SET last_seen_at = ?",
            ((dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat(sep=" "),),
        )
    page.goto(f"{target}?tab=ecus")
    expect(page).to_have_url(re.compile(r".*/console/login\?next=/console/vehicles/"))
    submit_credentials(page, "vic", PASSWORD)
    expect(page).to_have_url(re.compile(rf".*{target}\?tab=ecus$"))
    expect(page.get_by_role("heading", name=f"Vehicle {vin_of(1)}")).to_be_visible()


def test_vehicle_supplied_html_is_shown_as_text(
    page: Page, context: BrowserContext, screenshots: Path
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    context.add_init_script("window.__xss = 0; window.alert = () => { window.__xss = 99; };")
    sign_in(page, "vic", start=f"/console/vehicles/{vin_of(4)}")
    expect(page.get_by_role("heading", name=f"Vehicle {vin_of(4)}")).to_be_visible()
    log = page.locator(".log pre").first
    expect(log).to_contain_text('<script>window.__xss = 1; alert("xss")</script>')
    expect(page.locator("table.events")).to_contain_text("<script>window.__xss = 1;")
    expect(page.locator("main script")).to_have_count(0)
    expect(page.locator('main img[src="x"]')).to_have_count(0)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__xss") == 0
    assert dialogs == []
    expect(page.get_by_text("campaign autumn: failed")).to_be_visible()
    page.screenshot(path=str(screenshots / "vehicle.png"), full_page=True)


def test_vehicle_page_shows_ecus_manifest_and_certificate(page: Page) -> None:
    sign_in(page, "vic", start=f"/console/vehicles/{vin_of(1)}")
    ecus = page.get_by_role("region", name="ECUs")
    expect(ecus.get_by_role("row", name=re.compile(f"{vin_of(1)}-tbox"))).to_contain_text(
        "tbox-2.0"
    )
    expect(ecus).to_contain_text("adas-hw")
    expect(page.get_by_role("region", name="Certificates")).to_contain_text("valid")
    expect(page.locator("pre.manifest")).to_contain_text('"signed"')


def test_unknown_vin_is_a_404_page(page: Page) -> None:
    sign_in(page, "vic")
    response = page.goto("/console/vehicles/NOSUCHVIN0000000")
    assert response is not None and response.status == 404
    expect(page.locator("#error-message")).to_have_text("unknown VIN NOSUCHVIN0000000")
    page.get_by_role("link", name="Back to the fleet").click()
    expect(page.get_by_role("heading", name="Fleet", exact=True)).to_be_visible()
    missing = page.goto("/console/no/such/page")
    assert missing is not None and missing.status == 404
    expect(page.locator("#error-message")).to_have_text("There is no such page.")


def test_search_by_vin_and_ecu_serial(page: Page) -> None:
    sign_in(page, "vic")
    rows = page.locator("table.vehicles tbody tr")
    page.get_by_label("VIN or ECU serial").fill("0000000003")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#vehicles .count")).to_have_text("1 vehicle")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(vin_of(3))
    expect(page).to_have_url(re.compile(r".*q=0000000003"))  # htmx kept the URL shareable
    page.get_by_label("VIN or ECU serial").fill(f"{vin_of(2)}-adas".lower())
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(vin_of(2))
    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=f"Vehicle {vin_of(2)}")).to_be_visible()


@pytest.mark.parametrize(
    ("query", "vins"),
    [
        ("out_of_date=true", [2, 3]),
        ("failing=true", [4]),
        ("silent_days=1", [3]),
        ("out_of_date=true&silent_days=1", [3]),
    ],
)
def test_fleet_filters(page: Page, query: str, vins: list[int]) -> None:
    sign_in(page, "vic", start=f"/console/fleet?{query}")
    expect(page.locator("table.vehicles tbody tr td:first-child")).to_have_text(
        [vin_of(n) for n in vins]
    )


def test_silent_days_must_be_a_number(page: Page) -> None:
    sign_in(page, "vic", start="/console/fleet?silent_days=soon")
    expect(page.locator("#silent_days-error")).to_have_text(
        "Give a whole number of days from 1 to 3650."
    )
    expect(page.get_by_label("Silent for at least (days)")).to_have_attribute(
        "aria-invalid", "true"
    )


EXPECTED_VERSIONS = {
    ("tbox", "tbox-2.0"): 1,
    ("tbox", "factory.img"): 2,
    ("tbox", "(not reported)"): 1,
    ("adas", "adas-2.0"): 1,
    ("adas", "factory.img"): 2,
    ("adas", "(not reported)"): 1,
    ("bcm", "factory.img"): 3,
    ("bcm", "(not reported)"): 1,
}
"""Vehicles 1, 2 and 4 reported (1 with the new tbox and adas images), 3 never did."""


def test_version_chart_renders_and_its_csv_has_the_numbers(page: Page) -> None:
    sign_in(page, "vic")
    figures = page.locator("figure.chart-figure")
    expect(figures).to_have_count(3)
    tbox = figures.filter(has_text="ECU role tbox")
    expect(tbox.locator("svg .ct-bar")).to_have_count(3)
    expect(tbox.locator(".chart")).to_have_attribute("data-drawn", "3")
    expect(tbox.locator("svg .ct-label")).to_contain_text(["tbox-2.0"])
    heights = tbox.locator("svg .ct-bar").evaluate_all(
        "bars => bars.map(b => Math.abs(b.y2.baseVal.value - b.y1.baseVal.value))"
    )
    assert heights[0] > heights[1] > 0 and heights[1] == pytest.approx(heights[2])
    table = {
        (role, row.locator("th").inner_text()): int(row.locator("td").inner_text())
        for role in ("tbox", "adas", "bcm")
        for row in figures.filter(has_text=f"ECU role {role}").locator("tbody tr").all()
    }
    assert table == EXPECTED_VERSIONS
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download these numbers (CSV)").click()
    download = download_info.value
    assert download.suggested_filename == "fleet-versions.csv"
    text = Path(download.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["role"], r["version"]): int(r["ecus"]) for r in rows} == EXPECTED_VERSIONS
