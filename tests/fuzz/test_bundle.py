"""Fuzz the Uptane metadata bundle parser: a BundleError or the bundle that was encoded.

Properties: ``from_bytes(to_bytes(b)) == b``; any byte string, any JSON
document and any damaged encoding is a one-line BundleError or a bundle that
re-encodes to an equal one; hostile JSON (deep nesting, huge integers,
non-finite numbers, lone surrogates) never escapes as another exception.
"""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from redstone_agent.uptane.bundle import DIRECTOR, IMAGE, MetadataBundle, RepositoryMetadata
from redstone_agent.uptane.errors import BundleError
from tests.fuzz.profile import fuzz, one_line

role_names = st.sampled_from(["root", "timestamp", "snapshot", "targets", "supplier-a"]) | st.text(
    max_size=12
)
repositories = st.builds(
    RepositoryMetadata,
    st.lists(st.binary(max_size=60), min_size=1, max_size=3).map(tuple),
    st.dictionaries(role_names, st.binary(max_size=60), max_size=4),
)
bundles = st.builds(
    MetadataBundle,
    st.one_of(
        st.builds(lambda d: {DIRECTOR: d}, repositories),
        st.builds(lambda d, i: {DIRECTOR: d, IMAGE: i}, repositories, repositories),
    ),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def parse(data: bytes) -> None:
    try:
        bundle = MetadataBundle.from_bytes(data)
    except BundleError as exc:
        one_line(exc)
    else:
        assert MetadataBundle.from_bytes(bundle.to_bytes()) == bundle


@fuzz(200)
@given(bundles)
def test_bundle_round_trips(bundle: MetadataBundle) -> None:
    assert MetadataBundle.from_bytes(bundle.to_bytes()) == bundle


@fuzz(200)
@given(st.binary(max_size=300))
@example(b"[" * 100_000)  # RecursionError from json.loads
@example(b'{"format":"redstone-uptane-bundle","version":' + b"1" * 5000 + b"}")  # int digit limit
@example(b'{"format":"redstone-uptane-bundle","version":1e999}')
@example(b'"\\ud800"')
@example(b"\xff\xfe\x00")
def test_any_bytes_parse_or_are_a_bundle_error(data: bytes) -> None:
    parse(data)


@fuzz(200)
@given(json_values, st.sampled_from(["doc", "repositories", "director", "roots", "roles"]))
def test_any_json_in_any_place_parses_or_is_a_bundle_error(value: object, place: str) -> None:
    doc: dict[str, object] = {"format": "redstone-uptane-bundle", "version": 1}
    director: dict[str, object] = {"roots": ["AA=="], "roles": {"targets": "AA=="}}
    if place == "doc":
        parse(json.dumps(value).encode())
        return
    if place == "repositories":
        doc["repositories"] = value
    elif place == "director":
        doc["repositories"] = {DIRECTOR: value}
    else:
        director[place] = value
        doc["repositories"] = {DIRECTOR: director}
    parse(json.dumps(doc).encode())


@fuzz(300)
@given(bundles, st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_damaged_bundle_parses_or_is_a_bundle_error(
    bundle: MetadataBundle, at: int, value: int, cut: bool
) -> None:
    raw = bundle.to_bytes()
    at %= len(raw)
    parse(raw[:at] if cut else raw[:at] + bytes([value]) + raw[at + 1 :])


def test_oversized_bundle_is_refused_before_parsing() -> None:
    try:
        MetadataBundle.from_bytes(b" " * 101, max_bytes=100)
    except BundleError as exc:
        assert "exceeds" in one_line(exc)
    else:
        raise AssertionError("an oversized bundle was parsed")
