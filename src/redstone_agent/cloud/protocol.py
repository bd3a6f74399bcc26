"""The device API on the wire (docs/api.md §3): routes, caps, request bodies, answer parsing.

Everything here is pure — plain data in, typed values or a :mod:`.errors`
exception out — so each rule is tested without sockets; ``client.py`` only moves
bytes. The parsers trust nothing: the TBox reads a bounded number of bytes
(``MAX_*``), every field is type-checked, and a malformed answer is one
:class:`CloudProtocolError` line naming the route and the field. Unknown fields
are ignored so the backend can add some within ``/api/v1``.

ETag rules for the poll: an answer's ``ETag`` is remembered together with the
result it came with, and sent back as ``If-None-Match``; a ``304`` gives the
remembered result again with ``changed=False``. A missing or malformed ETag is
not an error, it only makes the next poll unconditional. A ``304`` to a poll
that sent no ETag, or naming another ETag than the one sent, is a protocol error
(the client then forgets the ETag, so one bad answer cannot wedge it; it keeps
the result, so ``changed`` still compares with what the caller last saw).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from redstone_agent.cloud.errors import (
    CloudAuthRejected,
    CloudConflict,
    CloudProtocolError,
    CloudRejected,
    CloudRequestError,
    CloudUnavailable,
)
from redstone_agent.cloud.messages import ManifestAck, Offer, OfferedImage, PollResult

POLL = "/api/v1/device/poll"
NONCE = "/api/v1/device/nonce"
MANIFEST = "/api/v1/device/manifest"
EVENTS = "/api/v1/device/events"
LOGS = "/api/v1/device/logs"

MAX_POLL_BYTES = 256 * 1024
"""A poll answer names a few hundred bytes per ECU; this leaves room for big vehicles."""
MAX_NONCE_BYTES = 1024
MAX_ACK_BYTES = 64 * 1024
"""Manifest, event and log acknowledgements."""
MAX_ERROR_BYTES = 4096
"""Of an error answer only the start is read: enough for ``{"error": "<one line>"}``."""
MAX_REASON_CHARS = 300
MAX_URL_CHARS = 2048
"""A release-notes URL is at most this long (the backend refuses longer ones)."""
"""A quoted server message is cut to this, so a hostile one cannot flood the logs."""

_ETAG = re.compile(r'^(W/)?"[\x21\x23-\x7e]{0,128}"$')
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NONCE = re.compile(r"^[0-9a-f]{16,128}$")

Headers = Mapping[str, str]


def route(method: str, path: str) -> str:
    """How messages name a call: ``GET /api/v1/device/poll``."""
    return f"{method} {path}"


def header(headers: Headers, name: str) -> str | None:
    """A header's value, whatever the case of its name (``requests`` and plain dicts alike)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` as one printable line of at most ``limit`` characters."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def parse_etag(value: str | None) -> str | None:
    """The entity tag to send back, or ``None`` when absent or not an RFC 9110 entity tag."""
    if value is None:
        return None
    value = value.strip()
    return value if _ETAG.match(value) else None


def oversize(where: str, limit: int) -> CloudProtocolError:
    """The error for an answer longer than the client will read."""
    return CloudProtocolError(where, f"answer exceeds the {limit}-byte limit; not read further")


# --- status ---------------------------------------------------------------------------------


def error_reason(status: int, body: bytes) -> str:
    """The server's ``{"error": ...}`` text, else the start of the body, else the status."""
    text = body[:MAX_ERROR_BYTES].decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"].strip():
        return one_line(doc["error"])
    return one_line(text) or f"HTTP {status} with no explanation"


def is_transient(status: int) -> bool:
    """Statuses that may pass if asked again later: server errors and 'too many requests'."""
    return status >= 500 or status == 429


def check_status(where: str, status: int, body: bytes) -> None:
    """Return for 2xx; raise the error class that says what the caller should do otherwise."""
    if 200 <= status < 300:
        return
    reason = error_reason(status, body)
    if is_transient(status):
        raise CloudUnavailable(where, f"server answered HTTP {status}: {reason}", status)
    if status in (401, 403):
        raise CloudAuthRejected(where, status, reason)
    if status == 409:
        raise CloudConflict(where, status, reason)
    if 400 <= status < 500:
        raise CloudRejected(where, status, reason)
    raise CloudProtocolError(where, f"unexpected HTTP {status}: {reason}")


# --- JSON fields ----------------------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object, naming the field path in every error."""

    def __init__(self, where: str, doc: object, path: str) -> None:
        self.where = where
        self.path = path
        if not isinstance(doc, dict):
            raise self.fail(path or "answer", f"expected a JSON object, got {_kind(doc)}")
        self.doc: dict[str, Any] = doc

    def fail(self, name: str, problem: str) -> CloudProtocolError:
        return CloudProtocolError(self.where, f"malformed answer: {name}: {problem}")

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        if key not in self.doc:
            raise self.fail(self._name(key), "missing")
        return self.doc[key]

    def string(self, key: str, *, pattern: re.Pattern[str] | None = None) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(self._name(key), f"expected a non-empty string, got {_kind(value)}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(self._name(key), f"not of the form {pattern.pattern}")
        return value

    def optional_string(self, key: str) -> str | None:
        if self.doc.get(key) is None:
            return None
        return self.string(key)

    def optional_text(self, key: str, limit: int) -> str:
        """A string that may be absent or empty (then ""), of at most ``limit`` characters."""
        value = self.doc.get(key, "")
        if not isinstance(value, str) or len(value) > limit:
            raise self.fail(
                self._name(key),
                f"expected a string of at most {limit} characters, got {_kind(value)}",
            )
        return value

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise self.fail(self._name(key), f"expected true or false, got {_kind(value)}")
        return value

    def count(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(self._name(key), f"expected a whole number >= 0, got {_kind(value)}")
        return value

    def seconds(self, key: str) -> float:
        value = self.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise self.fail(self._name(key), f"expected seconds > 0, got {_kind(value)}")
        return float(value)

    def child(self, key: str) -> _Fields:
        return _Fields(self.where, self.get(key), self._name(key))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def decode_object(where: str, body: bytes, limit: int) -> _Fields:
    """A size-checked UTF-8 JSON object."""
    if len(body) > limit:
        raise oversize(where, limit)
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        problem = f"malformed answer: not JSON ({one_line(str(exc))})"
        raise CloudProtocolError(where, problem) from exc
    return _Fields(where, doc, "")


# --- poll -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollMemory:
    """What the client keeps between polls: the last result and the ETag it came with."""

    etag: str | None
    """``None``: the answer had no usable ETag, or it was forgotten; the next poll is plain."""
    result: PollResult

    def without_etag(self) -> PollMemory:
        return PollMemory(None, self.result)


@dataclass(frozen=True)
class PollAnswer:
    """A parsed poll answer and what to remember for the next one."""

    result: PollResult
    memory: PollMemory


def poll_headers(memory: PollMemory | None) -> dict[str, str]:
    """Request headers: JSON, uncompressed (the cap counts wire bytes), conditional if we can."""
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    if memory is not None and memory.etag is not None:
        headers["If-None-Match"] = memory.etag
    return headers


def _offer(fields: _Fields) -> Offer:
    ecus_doc = fields.child("ecus")
    ecus: dict[str, OfferedImage] = {}
    for serial in ecus_doc.doc:
        if not serial:
            raise ecus_doc.fail(ecus_doc.path, "an ECU serial is empty")
        item = ecus_doc.child(serial)
        ecus[serial] = OfferedImage(
            target=item.string("target"),
            length=item.count("length"),
            sha256=item.string("sha256", pattern=_SHA256),
            release_counter=item.count("release_counter"),
        )
    return Offer(
        campaign=fields.string("campaign"),
        state=fields.string("state"),
        consent_required=fields.boolean("consent_required"),
        ecus=MappingProxyType(ecus),
        release_notes_url=fields.optional_text("release_notes_url", MAX_URL_CHARS),
    )


def parse_poll(
    status: int, headers: Headers, body: bytes, *, vin: str, memory: PollMemory | None = None
) -> PollAnswer:
    """Turn a poll answer into a result; ``memory`` is what the previous poll left behind.

    ``changed`` is False for a 304 and for a 200 that says the same as the
    remembered result (a server or proxy that ignores ``If-None-Match``).
    """
    where = route("GET", POLL)
    etag = parse_etag(header(headers, "ETag"))
    if status == 304:
        if memory is None or memory.etag is None:
            raise CloudProtocolError(where, "304 Not Modified, but no ETag was sent")
        if etag is not None and etag != memory.etag:
            raise CloudProtocolError(
                where, f"304 Not Modified names ETag {etag}, but {memory.etag} was sent"
            )
        unchanged = PollResult(memory.result.update, memory.result.poll_interval_s, changed=False)
        return PollAnswer(unchanged, memory)
    check_status(where, status, body)
    if status != 200:
        raise CloudProtocolError(where, f"unexpected HTTP {status} (expected 200 or 304)")
    fields = decode_object(where, body, MAX_POLL_BYTES)
    if fields.string("vin") != vin:
        raise fields.fail("vin", f"answer is for {one_line(fields.doc['vin'], 40)}, not {vin}")
    interval = fields.seconds("poll_interval_s")
    update = None if fields.get("update") is None else _offer(fields.child("update"))
    changed = memory is None or (update, interval) != (
        memory.result.update,
        memory.result.poll_interval_s,
    )
    result = PollResult(update, interval, changed)
    return PollAnswer(result, PollMemory(etag, result))


# --- nonce and manifest ---------------------------------------------------------------------


def parse_nonce(status: int, body: bytes) -> str:
    """``{"nonce": "<hex>"}`` -> the nonce (the next manifest must carry it)."""
    where = route("POST", NONCE)
    check_status(where, status, body)
    return decode_object(where, body, MAX_NONCE_BYTES).string("nonce", pattern=_NONCE)


def parse_manifest_ack(status: int, body: bytes) -> ManifestAck:
    """``{"accepted": true, "changed_ecus": [...], "assignment": null|"<state>"}``."""
    where = route("POST", MANIFEST)
    check_status(where, status, body)
    fields = decode_object(where, body, MAX_ACK_BYTES)
    changed = fields.get("changed_ecus")
    if not isinstance(changed, list) or not all(isinstance(s, str) and s for s in changed):
        raise fields.fail("changed_ecus", "expected an array of ECU serials")
    return ManifestAck(
        accepted=fields.boolean("accepted"),
        changed_ecus=tuple(changed),
        assignment=fields.optional_string("assignment"),
    )


# --- events and logs ------------------------------------------------------------------------


def event_body(
    kind: str, campaign: str | None, ecu_serial: str, detail: Mapping[str, Any] | None
) -> bytes:
    """The JSON body of an event (docs/api.md §3.5); refuses what the server would refuse."""
    where = route("POST", EVENTS)
    if not kind or len(kind) > 64:
        raise CloudRequestError(where, f"event kind must be 1..64 characters, got {kind!r}")
    doc = {
        "kind": kind,
        "campaign": campaign,
        "ecu_serial": ecu_serial,
        "detail": dict(detail or {}),
    }
    try:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CloudRequestError(where, f"event {kind}: detail is not JSON ({exc})") from exc
    return text.encode("utf-8")


def check_event_ack(status: int, body: bytes) -> None:
    """Any 2xx means stored; the body (the assignment state) is not needed by the vehicle."""
    check_status(route("POST", EVENTS), status, body)


def log_params(campaign: str | None, source: str) -> dict[str, str]:
    """Query parameters of a log upload (``campaign`` left out when there is none)."""
    params = {"source": source}
    if campaign is not None:
        params["campaign"] = campaign
    return params


def log_body(text: str) -> bytes:
    """UTF-8 bytes of a log excerpt; what UTF-8 cannot encode (a lone surrogate from a
    badly decoded journal line) becomes ``?``: a log upload never fails on its text."""
    return text.encode("utf-8", errors="replace")


def parse_log_ack(status: int, body: bytes) -> int:
    """``201 {"id": n}`` -> the stored log's id."""
    where = route("POST", LOGS)
    check_status(where, status, body)
    return decode_object(where, body, MAX_ACK_BYTES).count("id")
