"""A campaign's release notes URL: stored, checked, shown in its status and in the poll."""

from __future__ import annotations

import pytest

from tests.integration.cloud.fleet import Fleet

NOTES = "https://oem.example/release-notes/spring-2027?lang=en"


def spec(name: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": name,
        "targeting": {"model": "sedan"},
        "packages": ["adas-2"],
    }
    body.update(extra)
    return body


def test_the_poll_offer_names_the_release_notes(fleet: Fleet) -> None:
    fleet.model()
    fleet.package("adas", "2", "adas-hw", b"adas two" * 10, release_counter=2)
    car, other = fleet.vehicle(1), fleet.vehicle(2)
    fleet.ok("POST", "/api/v1/campaigns", json=spec("notes", release_notes_url=NOTES))
    assert fleet.ok("GET", "/api/v1/campaigns/notes")["release_notes_url"] == NOTES
    fleet.ok("POST", "/api/v1/campaigns/notes/start")
    assert fleet.poll(car)["update"]["release_notes_url"] == NOTES
    fleet.ok("POST", "/api/v1/campaigns/notes/cancel", json={"reason": "next"})
    fleet.ok("POST", "/api/v1/campaigns", json=spec("plain"))
    fleet.ok("POST", "/api/v1/campaigns/plain/start")
    assert fleet.poll(other)["update"]["release_notes_url"] == ""


@pytest.mark.parametrize(
    "url",
    [
        "ftp://oem.example/notes",
        "https:///no-host",
        "oem.example/notes",
        "https://oem.example/notes with space",
        "https://oem.example/n\u00f6tes",
        "https://oem.example/" + "n" * 2048,
    ],
)
def test_a_release_notes_url_that_is_not_plain_http_is_refused(fleet: Fleet, url: str) -> None:
    fleet.model()
    fleet.package("adas", "2", "adas-hw", b"adas two", release_counter=2)
    response = fleet.admin("POST", "/api/v1/campaigns", json=spec("bad", release_notes_url=url))
    assert response.status_code == 422, response.text
    assert "release_notes_url" in response.json()["error"]
