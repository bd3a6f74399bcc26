"""Payload layouts of every method and event (docs/someip.md §Payloads).

Each message is a frozen dataclass with ``encode() -> bytes`` and
``decode(bytes)``; decoding validates enum values, lengths and caps and raises
:class:`MalformedPayload` for anything else. Pure code, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from redstone_agent.someip.codec import Reader, Writer
from redstone_agent.someip.errors import MalformedPayload
from redstone_agent.someip.interface import (
    MAX_BUNDLE,
    MAX_NONCE,
    MAX_PAYLOAD,
    SHA256_LEN,
    ResultCode,
    SubState,
)


def _state(value: int) -> SubState:
    try:
        return SubState(value)
    except ValueError:
        raise MalformedPayload(f"unknown state {value}") from None


def _result(value: int) -> ResultCode:
    try:
        return ResultCode(value)
    except ValueError:
        raise MalformedPayload(f"unknown result code {value}") from None


@dataclass(frozen=True)
class Response:
    """Envelope of every method response: result code, detail text, body."""

    code: ResultCode
    detail: str = ""
    body: bytes = b""

    def encode(self) -> bytes:
        writer = Writer().u8(self.code).text(self.detail)
        return writer.done() + self.body

    @classmethod
    def decode(cls, payload: bytes) -> Response:
        reader = Reader(payload)
        code = _result(reader.u8("result code"))
        detail = reader.text("detail")
        return cls(code, detail, reader.rest())


@dataclass(frozen=True)
class Info:
    """GetInfo response body: who this Sub is and what it runs."""

    ecu_serial: str
    hardware_id: str
    booted_slot: str
    state: SubState
    current_target: str
    pending_target: str

    def encode(self) -> bytes:
        return (
            Writer()
            .text(self.ecu_serial)
            .text(self.hardware_id)
            .text(self.booted_slot)
            .u8(self.state)
            .text(self.current_target)
            .text(self.pending_target)
            .done()
        )

    @classmethod
    def decode(cls, payload: bytes) -> Info:
        r = Reader(payload)
        return cls(
            ecu_serial=r.text("ecu_serial"),
            hardware_id=r.text("hardware_id"),
            booted_slot=r.text("booted_slot"),
            state=_state(r.u8("state")),
            current_target=r.text("current_target"),
            pending_target=r.text("pending_target"),
        )


@dataclass(frozen=True)
class Status:
    """GetStatus response body and the STATUS event: a full snapshot.

    ``seq`` grows with every change so a Master can drop stale or duplicated
    events (SD resubscription after a Sub restart may deliver one twice).
    """

    state: SubState
    seq: int
    target: str
    bytes_done: int
    bytes_total: int
    error: ResultCode
    detail: str

    def encode(self) -> bytes:
        return (
            Writer()
            .u8(self.state)
            .u32(self.seq)
            .text(self.target)
            .u64(self.bytes_done)
            .u64(self.bytes_total)
            .u8(self.error)
            .text(self.detail)
            .done()
        )

    @classmethod
    def decode(cls, payload: bytes) -> Status:
        r = Reader(payload)
        return cls(
            state=_state(r.u8("state")),
            seq=r.u32("seq"),
            target=r.text("target"),
            bytes_done=r.u64("bytes_done"),
            bytes_total=r.u64("bytes_total"),
            error=_result(r.u8("error")),
            detail=r.text("detail"),
        )


@dataclass(frozen=True)
class Progress:
    """PROGRESS event: cheap, frequent transfer progress."""

    seq: int
    bytes_done: int
    bytes_total: int

    def encode(self) -> bytes:
        return Writer().u32(self.seq).u64(self.bytes_done).u64(self.bytes_total).done()

    @classmethod
    def decode(cls, payload: bytes) -> Progress:
        r = Reader(payload)
        return cls(r.u32("seq"), r.u64("bytes_done"), r.u64("bytes_total"))


@dataclass(frozen=True)
class ManifestRequest:
    """GetManifest request: the nonce the signed manifest must carry."""

    nonce: bytes

    def encode(self) -> bytes:
        return Writer().blob(self.nonce, MAX_NONCE).done()

    @classmethod
    def decode(cls, payload: bytes) -> ManifestRequest:
        nonce = Reader(payload).blob("nonce", MAX_NONCE)
        if not nonce:
            raise MalformedPayload("nonce must not be empty")
        request = cls(nonce)
        request.nonce_text()
        return request

    def nonce_text(self) -> str:
        """The nonce as the manifest carries it (the backend's nonces are ASCII hex)."""
        try:
            return self.nonce.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedPayload("nonce must be ASCII text") from None


@dataclass(frozen=True)
class Blob:
    """A single length-prefixed byte string (manifest, metadata bundle)."""

    data: bytes

    def encode(self) -> bytes:
        return Writer().blob(self.data, MAX_PAYLOAD - 4).done()

    @classmethod
    def decode(cls, payload: bytes) -> Blob:
        return cls(Reader(payload).blob("data"))


@dataclass(frozen=True)
class DeltaInfo:
    """Where the delta lives and which installed image it applies to."""

    url: str
    sha256: bytes
    length: int
    source_sha256: bytes


@dataclass(frozen=True)
class InstallRequest:
    """Install: the target to end up with, where to fetch it, optionally a delta."""

    target: str
    url: str
    sha256: bytes
    length: int
    delta: DeltaInfo | None = None

    def encode(self) -> bytes:
        w = Writer().text(self.target).text(self.url).fixed(self.sha256, SHA256_LEN)
        w.u64(self.length).u8(1 if self.delta else 0)
        if self.delta is not None:
            w.text(self.delta.url).fixed(self.delta.sha256, SHA256_LEN)
            w.u64(self.delta.length).fixed(self.delta.source_sha256, SHA256_LEN)
        return w.done()

    @classmethod
    def decode(cls, payload: bytes) -> InstallRequest:
        r = Reader(payload)
        target = r.text("target")
        url = r.text("url")
        sha256 = r.fixed(SHA256_LEN, "sha256")
        length = r.u64("length")
        delta = None
        if r.flag("has_delta"):
            delta = DeltaInfo(
                url=r.text("delta.url"),
                sha256=r.fixed(SHA256_LEN, "delta.sha256"),
                length=r.u64("delta.length"),
                source_sha256=r.fixed(SHA256_LEN, "delta.source_sha256"),
            )
        if not target or not url:
            raise MalformedPayload("target and url must not be empty")
        if not url.startswith(("http://", "https://")):
            raise MalformedPayload("url must be http(s)")
        return cls(target, url, sha256, length, delta)


@dataclass(frozen=True)
class MetadataLocation:
    """PutMetadataFrom: where the Master's cache serves a bundle too big for one datagram."""

    url: str
    sha256: bytes
    length: int

    def encode(self) -> bytes:
        return Writer().text(self.url).fixed(self.sha256, SHA256_LEN).u64(self.length).done()

    @classmethod
    def decode(cls, payload: bytes) -> MetadataLocation:
        r = Reader(payload)
        location = cls(r.text("url"), r.fixed(SHA256_LEN, "sha256"), r.u64("length"))
        if not location.url.startswith(("http://", "https://")):
            raise MalformedPayload("url must be http(s)")
        if not 0 < location.length <= MAX_BUNDLE:
            raise MalformedPayload(f"bundle length must be 1..{MAX_BUNDLE}")
        return location
