"""Hostile metadata reaches no odd code path: every form is a one-line UptaneError.

Nothing here is signed by anyone: an attacker on the vehicle network (or a
compromised Master) can send these bytes without any key. Each must end as
``BundleError``/``MetadataError`` whose message is one line that can be
encoded (logged, sent as a SOME/IP detail string), never ``RecursionError``,
``UnicodeEncodeError``, a ``ValueError`` from the int parser or a traceback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from redstone_agent.uptane.bundle import MetadataBundle
from redstone_agent.uptane.errors import BundleError, UptaneError, one_line
from redstone_agent.uptane.simulator import UptaneSimulator
from redstone_agent.uptane.verifier import EcuState, verify_full, verify_partial

DEEP = b"[" * 200_000 + b"]" * 200_000
HUGE = b"9" * 5000

Mutation = Callable[[dict[str, Any]], bytes]


def _role(doc: dict[str, Any], repo: str, role: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(doc["repositories"][repo]["roles"][role]))  # type: ignore[no-any-return]


def _set_role(doc: dict[str, Any], repo: str, role: str, raw: bytes) -> bytes:
    doc["repositories"][repo]["roles"][role] = base64.b64encode(raw).decode()
    return json.dumps(doc).encode()


def _add_root(doc: dict[str, Any], raw: bytes) -> bytes:
    doc["repositories"]["director"]["roots"].append(base64.b64encode(raw).decode())
    return json.dumps(doc).encode()


def _timestamp_with(field: str, value: bytes) -> Mutation:
    """The director's timestamp with ``"field": <value>`` spliced in as raw JSON text."""

    def mutate(doc: dict[str, Any]) -> bytes:
        raw = json.dumps(_role(doc, "director", "timestamp")).encode()
        raw = raw.replace(b'"signed": {', b'"signed": {"' + field.encode() + b'": ' + value + b", ")
        return _set_role(doc, "director", "timestamp", raw)

    return mutate


def _root_with(field: str, value: bytes) -> Mutation:
    def mutate(doc: dict[str, Any]) -> bytes:
        root = json.loads(base64.b64decode(doc["repositories"]["director"]["roots"][0]))
        raw = json.dumps(root).encode()
        raw = raw.replace(b'"signed": {', b'"signed": {"' + field.encode() + b'": ' + value + b", ")
        return _add_root(doc, raw)

    return mutate


CASES: dict[str, Mutation] = {
    # the bundle envelope itself
    "bundle: lone surrogate": lambda doc: json.dumps({**doc, "format": "\ud800"}).encode(),
    "bundle: lone surrogate key": lambda doc: json.dumps(
        {**doc, "repositories": {**doc["repositories"], "\udc80": {}}}
    ).encode(),
    "bundle: absurd nesting": lambda _doc: DEEP,
    "bundle: NaN": lambda doc: json.dumps(doc).replace('"version": 1', '"version": NaN').encode(),
    "bundle: Infinity": lambda doc: (
        json.dumps(doc).replace('"version": 1', '"version": -Infinity').encode()
    ),
    "bundle: huge integer": lambda doc: (
        json.dumps(doc).encode().replace(b'"version": 1', b'"version": ' + HUGE)
    ),
    "bundle: 1e400": lambda doc: (
        json.dumps(doc).replace('"version": 1', '"version": 1e400').encode()
    ),
    # a role file inside it (reached before any signature check)
    "timestamp: lone surrogate": _timestamp_with("x", b'"\\ud800"'),
    "timestamp: surrogate as a key": _timestamp_with("\\udfff", b"1"),
    "timestamp: absurd nesting": lambda doc: _set_role(doc, "director", "timestamp", DEEP),
    "timestamp: NaN": _timestamp_with("x", b"NaN"),
    "timestamp: 1e400": _timestamp_with("x", b"1e400"),
    "timestamp: huge integer": _timestamp_with("x", HUGE),
    "timestamp: 4000-digit integer": _timestamp_with("x", HUGE[:4000]),
    "targets: lone surrogate": lambda doc: _set_role(
        doc,
        "director",
        "targets",
        json.dumps(_role(doc, "director", "targets"))
        .encode()
        .replace(b'"signed": {', b'"signed": {"\\ud800": 0, '),
    ),
    # a root offered in the chain (its version is read before it verifies)
    "root chain: lone surrogate": _root_with("x", b'"\\udc80"'),
    "root chain: absurd nesting": lambda doc: _add_root(doc, DEEP),
    "root chain: NaN version": _root_with("version", b"NaN"),
    "root chain: huge version": _root_with("version", HUGE),
    "root chain: not UTF-8": lambda doc: _add_root(doc, b'{"signed": {"version": 2, "x": "\xff"}}'),
}


@pytest.fixture(scope="module")
def sim() -> UptaneSimulator:
    sim = UptaneSimulator.create()
    sim.add_image("ecu.img", b"image", ["hw-1"], 1)
    sim.assign("ECU-1", "hw-1", "ecu.img")
    return sim


def _verdict(action: Callable[[], object]) -> UptaneError:
    with pytest.raises(UptaneError) as caught:
        action()
    message = str(caught.value)
    assert "\n" not in message
    message.encode("utf-8")  # no lone surrogate survives into the message
    assert len(message) <= 600
    return caught.value


@pytest.mark.parametrize("case", CASES)
def test_hostile_metadata_is_a_one_line_uptane_error(sim: UptaneSimulator, case: str) -> None:
    data = CASES[case](json.loads(sim.bundle().to_bytes()))

    def full() -> object:
        bundle = MetadataBundle.from_bytes(data)
        return verify_full(bundle, sim.trusted_roots(), ecus={"ECU-1": EcuState("hw-1")})

    def partial() -> object:
        bundle = MetadataBundle.from_bytes(data)
        return verify_partial(bundle, sim.trusted_roots().director, "ECU-1")

    _verdict(full)
    if not case.startswith("timestamp"):  # partial verification reads no timestamp
        _verdict(partial)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (DEEP, "nested too deeply"),
        (b'{"a": "\\ud800"}', "not valid UTF-8 text"),
        (b'{"a": NaN}', "non-finite number NaN"),
        (b'{"a": ' + HUGE + b"}", "integer of 5000 digits is out of range"),
        (b"\xff", "not valid UTF-8"),
    ],
)
def test_bundle_parser_names_the_hostile_form(data: bytes, reason: str) -> None:
    error = _verdict(lambda: MetadataBundle.from_bytes(data))
    assert isinstance(error, BundleError)
    assert reason in str(error)


def test_one_line_escapes_surrogates_newlines_and_caps_length() -> None:
    assert one_line("a\nb\tc") == "a b c"
    assert one_line("x\ud800y") == "x\\ud800y"
    capped = one_line("z" * 10_000)
    assert len(capped) == 600 and capped.endswith("…")
