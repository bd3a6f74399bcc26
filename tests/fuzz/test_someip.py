"""Fuzz the SOME/IP codec, payload layouts and datagram framing.

Properties: every message layout decodes what it encodes; any byte string
decodes to a message that re-encodes to an equivalent one, or is a one-line
MalformedPayload; a datagram is split into exactly the messages batched in
it (checked against scapy's independent SOME/IP encoder too) or refused as
a whole with MalformedDatagram.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from redstone_agent.someip.codec import Reader
from redstone_agent.someip.errors import MalformedDatagram, MalformedPayload
from redstone_agent.someip.framing import HEADER_SIZE, Header, Message, split_datagram
from redstone_agent.someip.interface import (
    MAX_BUNDLE,
    MAX_NONCE,
    MAX_PAYLOAD,
    ResultCode,
    SubState,
)
from redstone_agent.someip.messages import (
    Blob,
    DeltaInfo,
    Info,
    InstallRequest,
    ManifestRequest,
    MetadataLocation,
    Progress,
    Response,
    Status,
)
from tests.fuzz.profile import fuzz, one_line, peak_memory_below

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
sha = st.binary(min_size=32, max_size=32)
# At most 4 UTF-8 bytes a character: 250 characters stay under MAX_TEXT.
text = st.text(max_size=250)
url = st.builds(lambda scheme, rest: scheme + rest, st.sampled_from(["http://", "https://"]), text)

LAYOUTS: dict[type[Any], st.SearchStrategy[Any]] = {
    Response: st.builds(Response, st.sampled_from(ResultCode), text, st.binary(max_size=200)),
    Info: st.builds(Info, text, text, text, st.sampled_from(SubState), text, text),
    Status: st.builds(
        Status, st.sampled_from(SubState), u32, text, u64, u64, st.sampled_from(ResultCode), text
    ),
    Progress: st.builds(Progress, u32, u64, u64),
    ManifestRequest: st.builds(
        ManifestRequest,
        st.text(st.characters(max_codepoint=127), min_size=1, max_size=MAX_NONCE).map(str.encode),
    ),
    Blob: st.builds(Blob, st.binary(max_size=2000)),
    InstallRequest: st.builds(
        InstallRequest,
        text.filter(bool),
        url,
        sha,
        u64,
        st.none() | st.builds(DeltaInfo, text, sha, u64, sha),
    ),
    MetadataLocation: st.builds(MetadataLocation, url, sha, st.integers(1, MAX_BUNDLE)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=lambda t: t.__name__)
@fuzz(100)
@given(data=st.data())
def test_every_layout_round_trips(layout: type[Any], data: st.DataObject) -> None:
    message = data.draw(LAYOUTS[layout])
    assert layout.decode(message.encode()) == message


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=lambda t: t.__name__)
@fuzz(150)
@given(data=st.data())
def test_any_payload_decodes_cleanly_or_is_malformed(
    layout: type[Any], data: st.DataObject
) -> None:
    """Random bytes, and valid encodings with bytes flipped, cut or appended."""
    payload = data.draw(
        st.one_of(
            st.binary(max_size=400),
            st.tuples(LAYOUTS[layout], st.integers(0, 400), st.integers(0, 255), st.booleans()).map(
                lambda t: _damage(t[0].encode(), t[1], t[2], t[3])
            ),
        )
    )
    try:
        message = layout.decode(payload)
    except MalformedPayload as exc:
        one_line(exc)
    else:
        assert layout.decode(message.encode()) == message


def _damage(raw: bytes, at: int, value: int, cut: bool) -> bytes:
    if not raw:
        return bytes([value])
    at %= len(raw) + 1
    if cut:
        return raw[:at]
    if at == len(raw):
        return raw + bytes([value])
    return raw[:at] + bytes([value]) + raw[at + 1 :]


@fuzz(100)
@given(st.sampled_from(["text", "blob"]), st.integers(3, 2**32 - 1))
@example("blob", 2**32 - 1)
@example("text", 2**16 - 1)
def test_declared_lengths_never_allocate_what_they_claim(field: str, declared: int) -> None:
    """A length prefix far beyond the payload: refused, with no allocation of that size."""
    width = 4 if field == "blob" else 2
    payload = min(declared, 256**width - 1).to_bytes(width, "big") + b"xy"
    with peak_memory_below(1 << 20), pytest.raises(MalformedPayload) as exc:
        getattr(Reader(payload), field)("field")
    one_line(exc.value)


def test_oversized_payload_is_refused_before_reading() -> None:
    with pytest.raises(MalformedPayload):
        Reader(bytes(MAX_PAYLOAD + 1))


# --------------------------------------------------------------------- framing

u8 = st.integers(0, 255)
u16 = st.integers(0, 2**16 - 1)
headers = st.builds(Header, u16, u16, u16, u16, u8, u8, u8, u8)
messages = st.builds(Message, headers, st.binary(max_size=120))


@fuzz(200)
@given(st.lists(messages, min_size=1, max_size=5))
def test_batched_messages_split_back_exactly(batch: list[Message]) -> None:
    assert split_datagram(b"".join(m.encode() for m in batch)) == batch


@fuzz(300)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.tuples(
            st.lists(messages, min_size=1, max_size=3), st.binary(min_size=1, max_size=30)
        ).map(lambda t: b"".join(m.encode() for m in t[0]) + t[1]),
    )
)
@example(b"")
@example(bytes(HEADER_SIZE - 1))
@example(b"\x52\x44\x00\x01\xff\xff\xff\xff" + bytes(8))  # length runs 4 GiB past the end
@example(b"\x52\x44\x00\x01\x00\x00\x00\x07" + bytes(8))  # length below the covered 8
def test_any_datagram_splits_into_whole_messages_or_is_refused(data: bytes) -> None:
    try:
        batch = split_datagram(data)
    except MalformedDatagram as exc:
        one_line(exc)
    else:
        assert batch
        assert b"".join(m.encode() for m in batch) == data


@fuzz(100, deadline_ms=5000)
@given(st.lists(messages, min_size=1, max_size=3))
def test_scapy_encoded_messages_split_the_same(batch: list[Message]) -> None:
    """scapy's SOME/IP layer, an independent encoder, agrees with our framing."""
    someip = pytest.importorskip("scapy.contrib.automotive.someip")
    # scapy reads a TP flag (0x20) as a segmented message with 4 more header bytes.
    assume(all(not m.header.message_type & 0x20 for m in batch))
    raw = b"".join(
        bytes(
            someip.SOMEIP(
                srv_id=m.header.service_id,
                sub_id=m.header.method_id,
                client_id=m.header.client_id,
                session_id=m.header.session_id,
                proto_ver=m.header.protocol_version,
                iface_ver=m.header.interface_version,
                msg_type=m.header.message_type,
                retcode=m.header.return_code,
            )
            / m.payload
        )
        for m in batch
    )
    assert split_datagram(raw) == batch
