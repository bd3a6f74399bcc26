"""Wire rules of the device API, table-driven, without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from redstone_agent.cloud import protocol
from redstone_agent.cloud.errors import (
    CloudAuthRejected,
    CloudConflict,
    CloudError,
    CloudProtocolError,
    CloudRejected,
    CloudRequestError,
    CloudUnavailable,
)
from redstone_agent.cloud.messages import ManifestAck, Offer, OfferedImage, PollResult

VIN = "RSTEST00000000001"
SHA = "ab" * 32
ETAG = '"0123456789abcdef0123456789abcdef"'
POLL_ROUTE = "GET /api/v1/device/poll"


def poll_doc(update: Any = None, **overrides: Any) -> dict[str, Any]:
    doc = {"poll_interval_s": 300, "update": update, "vin": VIN}
    doc.update(overrides)
    return doc


def update_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "campaign": "spring-2027",
        "consent_required": True,
        "ecus": {
            "ecu-1": {"length": 1048576, "release_counter": 3, "sha256": SHA, "target": "adas-3.1"}
        },
        "state": "offered",
    }
    doc.update(overrides)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def poll(
    body: bytes, status: int = 200, etag: str | None = ETAG, memory: Any = None
) -> protocol.PollAnswer:
    headers = {"ETag": etag} if etag is not None else {}
    return protocol.parse_poll(status, headers, body, vin=VIN, memory=memory)


# --- poll: good answers -------------------------------------------------------------------


def test_poll_without_update_remembers_the_etag() -> None:
    answer = poll(encode(poll_doc()))
    assert answer.result == PollResult(None, 300.0, changed=True)
    assert answer.memory == protocol.PollMemory(ETAG, answer.result)


def test_poll_with_update_is_typed_and_read_only() -> None:
    result = poll(encode(poll_doc(update_doc()))).result
    assert result.update == Offer(
        "spring-2027", "offered", True, {"ecu-1": OfferedImage("adas-3.1", 1048576, SHA, 3)}
    )
    with pytest.raises(TypeError):
        result.update.ecus["ecu-2"] = OfferedImage("x", 1, SHA, 1)  # type: ignore[index]


def test_poll_reads_the_release_notes_url_and_defaults_it_to_empty() -> None:
    url = "https://oem.example/notes/spring-2027"
    offered = poll(encode(poll_doc(update_doc(release_notes_url=url)))).result.update
    assert offered is not None and offered.release_notes_url == url
    older = poll(encode(poll_doc(update_doc()))).result.update  # a backend before the field
    assert older is not None and older.release_notes_url == ""


def test_poll_ignores_fields_it_does_not_know() -> None:
    doc = poll_doc(update_doc(priority="high"), server_time="now")
    assert poll(encode(doc)).result.update is not None


def test_304_gives_the_remembered_result_unchanged() -> None:
    first = poll(encode(poll_doc(update_doc())))
    again = poll(b"", status=304, memory=first.memory)
    assert again.result == PollResult(first.result.update, 300.0, changed=False)
    assert again.memory == first.memory
    without_etag = poll(b"", status=304, etag=None, memory=first.memory)
    assert without_etag.result.changed is False


def test_304_without_a_sent_etag_is_a_protocol_error() -> None:
    with pytest.raises(CloudProtocolError, match="304 Not Modified, but no ETag was sent"):
        poll(b"", status=304, memory=None)


def test_304_after_an_answer_without_etag_is_a_protocol_error() -> None:
    memory = poll(encode(poll_doc()), etag=None).memory
    assert memory.etag is None
    assert "If-None-Match" not in protocol.poll_headers(memory)
    with pytest.raises(CloudProtocolError, match="no ETag was sent"):
        poll(b"", status=304, memory=memory)


def test_304_naming_another_etag_is_a_protocol_error() -> None:
    memory = poll(encode(poll_doc())).memory
    with pytest.raises(CloudProtocolError, match='names ETag "other"'):
        poll(b"", status=304, etag='"other"', memory=memory)


def test_200_saying_the_same_again_is_not_a_change() -> None:
    first = poll(encode(poll_doc(update_doc())))
    same = poll(encode(poll_doc(update_doc())), memory=first.memory)
    assert same.result.changed is False
    other = poll(encode(poll_doc(update_doc(state="accepted"))), memory=first.memory)
    assert other.result.changed is True
    slower = poll(encode(poll_doc(update_doc(), poll_interval_s=600)), memory=first.memory)
    assert slower.result.changed is True


@pytest.mark.parametrize(
    ("headers", "remembered"),
    [
        ({"ETag": ETAG}, ETAG),
        ({"etag": ETAG}, ETAG),
        ({"ETAG": f" {ETAG} "}, ETAG),
        ({"ETag": 'W/"weak-1"'}, 'W/"weak-1"'),
        ({"ETag": '""'}, '""'),
        ({}, None),
        ({"ETag": "unquoted"}, None),
        ({"ETag": '"has space"'}, None),
        ({"ETag": '"quote"inside"'}, None),
        ({"ETag": '"ctl\x01"'}, None),
        ({"ETag": '"' + "a" * 129 + '"'}, None),
        ({"ETag": '"a", "b"'}, None),
    ],
)
def test_etag_rules(headers: dict[str, str], remembered: str | None) -> None:
    """Only a well-formed entity tag is sent back; anything else makes the next poll plain."""
    answer = protocol.parse_poll(200, headers, encode(poll_doc()), vin=VIN)
    assert answer.memory.etag == remembered


def test_poll_headers_are_conditional_only_with_memory() -> None:
    assert "If-None-Match" not in protocol.poll_headers(None)
    memory = poll(encode(poll_doc())).memory
    headers = protocol.poll_headers(memory)
    assert headers["If-None-Match"] == ETAG
    assert headers["Accept-Encoding"] == "identity"


# --- poll: malformed answers --------------------------------------------------------------


def _ecu(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"length": 5, "release_counter": 1, "sha256": SHA, "target": "t"}
    item.update(overrides)
    return {"ecus": {"ecu-1": item}}


MALFORMED: list[tuple[bytes, str]] = [
    (b"", "not JSON"),
    (b"{", "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    (b"[]", "answer: expected a JSON object, got an array"),
    (b'"x"', "answer: expected a JSON object, got a string"),
    (encode({"poll_interval_s": 300, "update": None}), "vin: missing"),
    (encode(poll_doc(vin="RSTEST00000000002")), "vin: answer is for RSTEST00000000002"),
    (encode(poll_doc(vin=7)), "vin: expected a non-empty string, got 7"),
    (encode(poll_doc(poll_interval_s=0)), "poll_interval_s: expected seconds > 0, got 0"),
    (encode(poll_doc(poll_interval_s=-5)), "poll_interval_s: expected seconds > 0"),
    (encode(poll_doc(poll_interval_s="300")), "poll_interval_s: expected seconds > 0"),
    (encode(poll_doc(poll_interval_s=True)), "poll_interval_s: expected seconds > 0, got True"),
    (b'{"poll_interval_s":NaN,"update":null,"vin":"%s"}' % VIN.encode(), "seconds > 0, got nan"),
    (b'{"poll_interval_s":1e999,"update":null,"vin":"%s"}' % VIN.encode(), "seconds > 0"),
    (encode({"poll_interval_s": 300, "vin": VIN}), "update: missing"),
    (encode(poll_doc([])), "update: expected a JSON object, got an array"),
    (encode(poll_doc(update_doc(campaign=""))), "update.campaign: expected a non-empty string"),
    (encode(poll_doc(update_doc(state=None))), "update.state: expected a non-empty string"),
    (encode(poll_doc(update_doc(consent_required="yes"))), "update.consent_required: expected"),
    (encode(poll_doc(update_doc(ecus=[]))), "update.ecus: expected a JSON object"),
    (encode(poll_doc(update_doc(ecus={"": {}}))), "update.ecus: an ECU serial is empty"),
    (encode(poll_doc(update_doc(ecus={"e": 1}))), "update.ecus.e: expected a JSON object, got 1"),
    (encode(poll_doc(update_doc(**_ecu(length=-1)))), "update.ecus.ecu-1.length: expected a whole"),
    (encode(poll_doc(update_doc(**_ecu(length=1.5)))), "update.ecus.ecu-1.length: expected"),
    (encode(poll_doc(update_doc(**_ecu(length=True)))), "update.ecus.ecu-1.length: expected"),
    (encode(poll_doc(update_doc(**_ecu(release_counter=None)))), "release_counter: expected"),
    (encode(poll_doc(update_doc(**_ecu(sha256=SHA.upper())))), "sha256: not of the form"),
    (encode(poll_doc(update_doc(**_ecu(sha256="ab")))), "sha256: not of the form"),
    (encode(poll_doc(update_doc(**_ecu(target="")))), "update.ecus.ecu-1.target: expected"),
    (encode(poll_doc(update_doc(release_notes_url=7))), "update.release_notes_url: expected"),
    (
        encode(poll_doc(update_doc(release_notes_url="https://x/" + "n" * 2048))),
        "update.release_notes_url: expected a string of at most 2048 characters",
    ),
]


@pytest.mark.parametrize(("body", "problem"), MALFORMED)
def test_malformed_poll_answers_are_one_line_protocol_errors(body: bytes, problem: str) -> None:
    with pytest.raises(CloudProtocolError) as failed:
        poll(body)
    message = str(failed.value)
    assert message.startswith(f"{POLL_ROUTE}: malformed answer: ")
    assert problem in message
    assert "\n" not in message


def test_oversize_poll_answer_is_refused() -> None:
    doc = poll_doc(padding="x" * protocol.MAX_POLL_BYTES)
    with pytest.raises(CloudProtocolError, match="exceeds the 262144-byte limit"):
        poll(encode(doc))
    exactly = encode(poll_doc())
    exactly += b" " * (protocol.MAX_POLL_BYTES - len(exactly))
    assert poll(exactly).result.update is None


# --- statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            403,
            b'{"error":"client certificate has been revoked"}',
            CloudAuthRejected,
            "GET /api/v1/device/poll refused (HTTP 403): client certificate has been revoked",
        ),
        (
            401,
            b'{"error":"the device API needs a TLS client certificate"}',
            CloudAuthRejected,
            "GET /api/v1/device/poll refused (HTTP 401): the device API needs a TLS client "
            "certificate",
        ),
        (404, b'{"error":"no"}', CloudRejected, "GET /api/v1/device/poll refused (HTTP 404): no"),
        (409, b'{"error":"x"}', CloudConflict, "GET /api/v1/device/poll refused (HTTP 409): x"),
        (
            503,
            b"<html>\n<b>busy</b>\n</html>",
            CloudUnavailable,
            "GET /api/v1/device/poll: server answered HTTP 503: <html> <b>busy</b> </html>",
        ),
        (
            429,
            b"",
            CloudUnavailable,
            "GET /api/v1/device/poll: server answered HTTP 429: HTTP 429 with no explanation",
        ),
        (
            307,
            b"",
            CloudProtocolError,
            "GET /api/v1/device/poll: unexpected HTTP 307: HTTP 307 with no explanation",
        ),
        (
            204,
            b"",
            CloudProtocolError,
            "GET /api/v1/device/poll: unexpected HTTP 204 (expected 200 or 304)",
        ),
    ],
)
def test_statuses_map_to_what_the_caller_should_do(
    status: int, body: bytes, error: type[CloudError], message: str
) -> None:
    with pytest.raises(error) as failed:
        poll(body, status=status)
    assert type(failed.value) is error
    assert str(failed.value) == message
    assert failed.value.route == POLL_ROUTE


def test_rejection_and_outage_carry_the_status() -> None:
    with pytest.raises(CloudRejected) as rejected:
        protocol.check_status("POST /x", 422, b'{"error": "bad signature"}')
    assert (rejected.value.status, rejected.value.reason) == (422, "bad signature")
    with pytest.raises(CloudUnavailable) as down:
        protocol.check_status("POST /x", 502, b"")
    assert down.value.status == 502


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"error": "two\\nlines\\tand  tabs"}', "two lines and tabs"),
        (b'{"error": ""}', '{"error": ""}'),
        (b'{"error": 5}', '{"error": 5}'),
        (b"plain text", "plain text"),
        (b"\xff\xfebinary", "\ufffd\ufffdbinary"),
        (b"", "HTTP 500 with no explanation"),
        (b"\x00\x01", "HTTP 500 with no explanation"),
    ],
)
def test_error_reason_is_one_printable_line(body: bytes, reason: str) -> None:
    assert protocol.error_reason(500, body) == reason


def test_error_reason_is_cut_short() -> None:
    reason = protocol.error_reason(500, encode({"error": "y" * 10_000}))
    assert len(reason) == protocol.MAX_REASON_CHARS
    assert reason.endswith("…")


# --- nonce, manifest, events, logs --------------------------------------------------------


def test_nonce() -> None:
    assert protocol.parse_nonce(200, b'{"nonce": "%s"}' % (b"0a" * 16)) == "0a" * 16


@pytest.mark.parametrize(
    ("status", "body", "error", "problem"),
    [
        (200, b'{"nonce": "xyz"}', CloudProtocolError, "nonce: not of the form"),
        (200, b'{"nonce": "ABCDEF0123456789"}', CloudProtocolError, "nonce: not of the form"),
        (200, b"{}", CloudProtocolError, "nonce: missing"),
        (200, b'{"nonce": "' + b"a" * 2000 + b'"}', CloudProtocolError, "1024-byte limit"),
        (403, b'{"error": "revoked"}', CloudAuthRejected, "refused (HTTP 403): revoked"),
    ],
)
def test_bad_nonce_answers(status: int, body: bytes, error: type[CloudError], problem: str) -> None:
    with pytest.raises(error, match=r"^POST /api/v1/device/nonce") as failed:
        protocol.parse_nonce(status, body)
    assert problem in str(failed.value)


def test_manifest_ack() -> None:
    body = b'{"accepted": true, "changed_ecus": ["a", "b"], "assignment": "succeeded"}'
    assert protocol.parse_manifest_ack(200, body) == ManifestAck(True, ("a", "b"), "succeeded")
    quiet = b'{"accepted": true, "changed_ecus": [], "assignment": null}'
    assert protocol.parse_manifest_ack(200, quiet) == ManifestAck(True, (), None)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"changed_ecus": [], "assignment": null}', "accepted: missing"),
        (b'{"accepted": 1, "changed_ecus": [], "assignment": null}', "accepted: expected true"),
        (b'{"accepted": true, "changed_ecus": "a", "assignment": null}', "changed_ecus: expected"),
        (b'{"accepted": true, "changed_ecus": [1], "assignment": null}', "changed_ecus: expected"),
        (b'{"accepted": true, "changed_ecus": [], "assignment": 3}', "assignment: expected"),
    ],
)
def test_bad_manifest_acks(body: bytes, problem: str) -> None:
    with pytest.raises(CloudProtocolError, match=r"^POST /api/v1/device/manifest: malformed") as e:
        protocol.parse_manifest_ack(200, body)
    assert problem in str(e.value)


def test_replayed_manifest_is_a_conflict() -> None:
    body = b'{"error": "manifest nonce was already used: replayed manifest rejected"}'
    with pytest.raises(CloudConflict) as replay:
        protocol.parse_manifest_ack(409, body)
    assert str(replay.value) == (
        "POST /api/v1/device/manifest refused (HTTP 409): "
        "manifest nonce was already used: replayed manifest rejected"
    )


def test_event_body_is_the_documented_shape() -> None:
    body = protocol.event_body("install_failed", "spring", "ecu-1", {"code": 4, "text": "ä"})
    assert json.loads(body) == {
        "kind": "install_failed",
        "campaign": "spring",
        "ecu_serial": "ecu-1",
        "detail": {"code": 4, "text": "ä"},
    }
    assert json.loads(protocol.event_body("consent_given", None, "", None))["detail"] == {}


@pytest.mark.parametrize(
    ("kind", "detail", "problem"),
    [
        ("", None, "event kind must be 1..64 characters"),
        ("k" * 65, None, "event kind must be 1..64 characters"),
        ("x", {"bad": {1, 2}}, "detail is not JSON"),
        ("x", {"bad": float("nan")}, "detail is not JSON"),
    ],
)
def test_event_body_refuses_what_cannot_be_sent(
    kind: str, detail: dict[str, Any] | None, problem: str
) -> None:
    with pytest.raises(CloudRequestError, match=r"^POST /api/v1/device/events: ") as refused:
        protocol.event_body(kind, None, "", detail)
    assert problem in str(refused.value)


def test_event_ack_needs_only_a_2xx() -> None:
    protocol.check_event_ack(200, b'{"assignment": "accepted"}')
    protocol.check_event_ack(200, b"whatever")
    with pytest.raises(CloudRejected, match=r"refused \(HTTP 413\): body exceeds"):
        protocol.check_event_ack(413, b'{"error": "body exceeds the 65536-byte limit"}')


def test_log_request_and_ack() -> None:
    assert protocol.log_params(None, "master") == {"source": "master"}
    assert protocol.log_params("c", "sub") == {"source": "sub", "campaign": "c"}
    assert protocol.log_body("ok ä \udcff") == "ok ä ?".encode()
    assert protocol.parse_log_ack(201, b'{"id": 42}') == 42
    with pytest.raises(CloudProtocolError, match="id: expected a whole number"):
        protocol.parse_log_ack(201, b'{"id": -1}')
