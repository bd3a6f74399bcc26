"""The metadata bundle's wire form: exact bytes preserved, hostile input refused."""

from __future__ import annotations

import base64
import json

import pytest

from redstone_agent.uptane.bundle import MetadataBundle, RepositoryMetadata
from redstone_agent.uptane.errors import BundleError


def test_round_trip_keeps_bytes_exactly() -> None:
    bundle = MetadataBundle(
        {
            "director": RepositoryMetadata((b"r1", b"r2 \x00\xff"), {"targets": b"{ }"}),
            "image": RepositoryMetadata((b"r",), {"supplier/a b": b"\n"}),
        }
    )
    again = MetadataBundle.from_bytes(bundle.to_bytes())
    assert again == bundle
    assert again.size() == bundle.size() == 2 + 5 + 3 + 1 + 1


def _doc(**repos: object) -> bytes:
    return json.dumps(
        {"format": "redstone-uptane-bundle", "version": 1, "repositories": repos}
    ).encode()


GOOD = {"roots": [base64.b64encode(b"r").decode()], "roles": {}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x01", "not JSON"),
        (b"[]", "not a redstone-uptane-bundle"),
        (
            json.dumps({"format": "redstone-uptane-bundle", "version": 2}).encode(),
            "unsupported bundle version",
        ),
        (_doc(image=GOOD), "lacks the director"),
        (_doc(director=GOOD, evil=GOOD), "unknown repository 'evil'"),
        (_doc(director={"roots": [], "roles": {}}), "roots must be a non-empty list"),
        (_doc(director={"roots": ["!!"], "roles": {}}), "bad base64"),
        (_doc(director={"roots": [1], "roles": {}}), "expected a base64 string"),
        (_doc(director={"roots": GOOD["roots"], "roles": []}), "roles must be an object"),
        (_doc(director=[]), "expected an object"),
    ],
)
def test_malformed_bundles_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        MetadataBundle.from_bytes(data)


def test_oversized_bundle_refused_before_parsing() -> None:
    with pytest.raises(BundleError, match="exceeds 10"):
        MetadataBundle.from_bytes(b" " * 11, max_bytes=10)


def test_partial_bundle_lacking_image_is_named() -> None:
    bundle = MetadataBundle({"director": RepositoryMetadata((b"r",), {})})
    with pytest.raises(BundleError, match="lacks the image repository"):
        bundle.repository("image")
