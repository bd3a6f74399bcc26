"""Payload layouts of every method and event (docs/someip.md §Payloads).

Each message is a frozen dataclass with ``encode() -> bytes`` and
``decode(bytes)``; decoding validates enum values, lengths and caps and raises
:class:`MalformedPayload` for anything else. Pure code, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from redstone_agent.someip.codec import Reader, Writer
from redstone_agent.someip.errors import MalformedPayload
from redstone_agent.someip.interface import (
    INTERFACE_MINOR,
    MAX_BUNDLE,
    MAX_NONCE,
    MAX_PAYLOAD,
    MAX_PROXIED,
    MAX_PROXIED_IMAGE,
    SHA256_LEN,
    ProxiedState,
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


def _proxied_state(value: int) -> ProxiedState:
    try:
        return ProxiedState(value)
    except ValueError:
        raise MalformedPayload(f"unknown proxied state {value}") from None


def _http_url(url: str, what: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise MalformedPayload(f"{what} must be http(s)")
    return url


def _serial(reader: Reader) -> str:
    serial = reader.text("serial")
    if not serial:
        raise MalformedPayload("serial must not be empty")
    return serial


def _nonce(raw: bytes) -> str:
    """A manifest nonce as the manifest carries it (the backend's nonces are ASCII hex)."""
    if not raw:
        raise MalformedPayload("nonce must not be empty")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedPayload("nonce must be ASCII text") from None


def _read_nonce(reader: Reader) -> bytes:
    """A manifest request's nonce, refused unless :func:`_nonce` can carry it."""
    nonce = reader.blob("nonce", MAX_NONCE)
    _nonce(nonce)
    return nonce


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
    """GetInfo response body: who this Sub is, what it runs and (1.1) what it can do.

    ``interface_minor`` and ``proxied`` are appended in 1.1: a 1.0 Sub's payload
    ends before them and decodes as minor 0 with no proxied ECUs; a 1.0 Master
    ignores them (trailing bytes).
    """

    ecu_serial: str
    hardware_id: str
    booted_slot: str
    state: SubState
    current_target: str
    pending_target: str
    interface_minor: int = INTERFACE_MINOR
    proxied: tuple[str, ...] = ()
    """Serials of the UDS ECUs this Sub flashes on the Master's behalf."""

    def encode(self) -> bytes:
        if len(self.proxied) > MAX_PROXIED:
            raise ValueError(f"more than {MAX_PROXIED} proxied ECUs")
        w = (
            Writer()
            .text(self.ecu_serial)
            .text(self.hardware_id)
            .text(self.booted_slot)
            .u8(self.state)
            .text(self.current_target)
            .text(self.pending_target)
            .u32(self.interface_minor)
            .u16(len(self.proxied))
        )
        for serial in self.proxied:
            w.text(serial)
        return w.done()

    @classmethod
    def decode(cls, payload: bytes) -> Info:
        r = Reader(payload)
        info = cls(
            ecu_serial=r.text("ecu_serial"),
            hardware_id=r.text("hardware_id"),
            booted_slot=r.text("booted_slot"),
            state=_state(r.u8("state")),
            current_target=r.text("current_target"),
            pending_target=r.text("pending_target"),
            interface_minor=0,
        )
        if not r.more():
            return info  # a 1.0 Sub
        minor = r.u32("interface_minor")
        count = r.u16("proxied count")
        if count > MAX_PROXIED:
            raise MalformedPayload(f"proxied count {count} exceeds {MAX_PROXIED}")
        proxied = tuple(r.text(f"proxied[{i}]") for i in range(count))
        return replace(info, interface_minor=minor, proxied=proxied)


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
        return cls(_read_nonce(Reader(payload)))

    def nonce_text(self) -> str:
        """The nonce as the manifest carries it (the backend's nonces are ASCII hex)."""
        return _nonce(self.nonce)


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


# -- 1.1: UDS ECUs behind a Sub ------------------------------------------------------


@dataclass(frozen=True)
class ProxiedStatusRequest:
    """GetProxiedStatus: which ECU; ``refresh`` asks the Sub to read its version DID
    first (when nothing runs on it), so ``version`` is what the ECU says now."""

    serial: str
    refresh: bool = False

    def encode(self) -> bytes:
        return Writer().text(self.serial).u8(1 if self.refresh else 0).done()

    @classmethod
    def decode(cls, payload: bytes) -> ProxiedStatusRequest:
        r = Reader(payload)
        return cls(_serial(r), r.flag("refresh"))


@dataclass(frozen=True)
class ProxiedSerial:
    """ProxyRollback: the ECU to flash back."""

    serial: str

    def encode(self) -> bytes:
        return Writer().text(self.serial).done()

    @classmethod
    def decode(cls, payload: bytes) -> ProxiedSerial:
        return cls(_serial(Reader(payload)))


@dataclass(frozen=True)
class ProxyManifestRequest:
    """ProxyManifest: the ECU and the nonce its signed manifest must carry."""

    serial: str
    nonce: bytes

    def encode(self) -> bytes:
        return Writer().text(self.serial).blob(self.nonce, MAX_NONCE).done()

    @classmethod
    def decode(cls, payload: bytes) -> ProxyManifestRequest:
        r = Reader(payload)
        return cls(_serial(r), _read_nonce(r))

    def nonce_text(self) -> str:
        return _nonce(self.nonce)


@dataclass(frozen=True)
class ProxiedImage:
    """One UDS image in the Master's cache: what it is, where it is, what it reports."""

    target: str
    url: str
    sha256: bytes
    length: int
    version: str
    """What the ECU's version DID reports once the image runs."""
    release_counter: int

    def write(self, w: Writer) -> None:
        w.text(self.target).text(self.url).fixed(self.sha256, SHA256_LEN).u64(self.length)
        w.text(self.version).u32(self.release_counter)

    @classmethod
    def read(cls, r: Reader, what: str) -> ProxiedImage:
        image = cls(
            target=r.text(f"{what}.target"),
            url=r.text(f"{what}.url"),
            sha256=r.fixed(SHA256_LEN, f"{what}.sha256"),
            length=r.u64(f"{what}.length"),
            version=r.text(f"{what}.version"),
            release_counter=r.u32(f"{what}.release_counter"),
        )
        if not image.target or not image.version:
            raise MalformedPayload(f"{what}.target and {what}.version must not be empty")
        _http_url(image.url, f"{what}.url")
        if not 0 < image.length <= MAX_PROXIED_IMAGE:
            raise MalformedPayload(f"{what}.length must be 1..{MAX_PROXIED_IMAGE}")
        return image


@dataclass(frozen=True)
class ProxyInstallRequest:
    """ProxyInstall: flash ``image`` into ECU ``serial``; ``previous`` is what it gets back
    on ProxyRollback. ``metadata`` is the Uptane bundle the Master verified, fetched and
    verified by the Sub exactly as PutMetadataFrom's (same layout, same checks)."""

    serial: str
    metadata: MetadataLocation
    image: ProxiedImage
    previous: ProxiedImage | None = None

    def encode(self) -> bytes:
        w = Writer().text(self.serial)
        w.text(self.metadata.url).fixed(self.metadata.sha256, SHA256_LEN).u64(self.metadata.length)
        self.image.write(w)
        w.u8(1 if self.previous else 0)
        if self.previous is not None:
            self.previous.write(w)
        return w.done()

    @classmethod
    def decode(cls, payload: bytes) -> ProxyInstallRequest:
        r = Reader(payload)
        serial = _serial(r)
        metadata = MetadataLocation(
            _http_url(r.text("metadata.url"), "metadata.url"),
            r.fixed(SHA256_LEN, "metadata.sha256"),
            r.u64("metadata.length"),
        )
        if not 0 < metadata.length <= MAX_BUNDLE:
            raise MalformedPayload(f"metadata.length must be 1..{MAX_BUNDLE}")
        image = ProxiedImage.read(r, "image")
        previous = ProxiedImage.read(r, "previous") if r.flag("has_previous") else None
        return cls(serial, metadata, image, previous)


@dataclass(frozen=True)
class ProxiedStatus:
    """GetProxiedStatus body and the PROXIED_STATUS event: one ECU behind the Sub.

    ``seq`` grows with every change of that ECU (journaled, survives restarts);
    ``running`` is the target the Sub knows the ECU runs, ``version`` what its
    version DID said when last read ("" unread or unreadable).
    """

    serial: str
    state: ProxiedState
    seq: int
    target: str
    """Target of the operation under way, or of the last one."""
    running: str
    version: str
    bytes_done: int
    bytes_total: int
    error: ResultCode
    detail: str

    def encode(self) -> bytes:
        return (
            Writer()
            .text(self.serial)
            .u8(self.state)
            .u32(self.seq)
            .text(self.target)
            .text(self.running)
            .text(self.version)
            .u64(self.bytes_done)
            .u64(self.bytes_total)
            .u8(self.error)
            .text(self.detail)
            .done()
        )

    @classmethod
    def decode(cls, payload: bytes) -> ProxiedStatus:
        r = Reader(payload)
        return cls(
            serial=_serial(r),
            state=_proxied_state(r.u8("state")),
            seq=r.u32("seq"),
            target=r.text("target"),
            running=r.text("running"),
            version=r.text("version"),
            bytes_done=r.u64("bytes_done"),
            bytes_total=r.u64("bytes_total"),
            error=_result(r.u8("error")),
            detail=r.text("detail"),
        )
