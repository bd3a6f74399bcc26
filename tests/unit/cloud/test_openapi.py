"""docs/openapi.json is generated from the application and must be current."""

from __future__ import annotations

from pathlib import Path

from redstone_cloud.api.app import openapi_document

DOC = Path(__file__).parents[3] / "docs" / "openapi.json"


def test_committed_openapi_document_is_current() -> None:
    assert DOC.read_text() == openapi_document(), (
        "docs/openapi.json is stale: run 'redstone-cloud openapi > docs/openapi.json'"
    )
