"""Offline (USB/local) update bundles: one tar file, verified exactly like the cloud.

The format is specified in docs/bundle.md; this module is its one home. The
cloud writes a bundle with :func:`tar_stream` (``redstone_cloud.services.bundle``);
the Master opens it with :meth:`OfflineBundle.open` and verifies it with
:class:`OfflinePrimary`, which is :class:`~redstone_agent.uptane.primary.PrimaryVerifier`
with a different fetcher: ``tuf.ngclient`` walks the bundle's files as if they
were the director's and the image repository's URLs, with the vehicle's pinned
roots, its metadata cache (rollback protection), the same size caps and the
same cross-check. Nothing in the bundle is trusted until that has passed; the
manifest (``manifest.json``) is not signed and only names the campaign.

Reading is defensive because the file comes from whoever holds the USB stick:
only regular files with names from a fixed grammar (so no paths, links,
devices or duplicates), size caps per kind of member and in total, every
member inside the file. Target bytes are hashed while they are copied into the
Master's cache, never trusted by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.ngclient.fetcher import FetcherInterface

from redstone_agent.journal import atomic_write
from redstone_agent.uptane.bundle import DIRECTOR, IMAGE, MetadataBundle, strict_json
from redstone_agent.uptane.errors import BundleError, OfflineBundleError
from redstone_agent.uptane.fetcher import Progress
from redstone_agent.uptane.primary import (
    MetadataCaps,
    PrimaryConfig,
    PrimaryResult,
    PrimaryVerifier,
)
from redstone_agent.uptane.verifier import (
    Clock,
    EcuState,
    TrustedRoots,
    VerifiedTarget,
    system_clock,
)

log = logging.getLogger(__name__)

FORMAT = "redstone-offline-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TARGETS = "targets"
REPOSITORIES = (DIRECTOR, IMAGE)
URL_SCHEME = "bundle:"
"""Metadata 'URLs' the ngclient Updater asks the bundle fetcher for: ``bundle:director/…``."""

CHUNK = 1 << 20
RECORD = 10240
"""tar's record size: the archive is padded to a multiple of it, as tar(1) writes."""
MAX_TRAILER = 64 * 1024
"""Zero blocks allowed after the archive's end (end marker and record padding)."""

_METADATA_FILE = re.compile(r"(?:timestamp|[0-9]{1,20}\.[A-Za-z0-9_.~%-]{1,200})\.json")
"""Published metadata names (docs/uptane.md §4): ``timestamp.json``, ``N.<role>.json``."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MEMBER_KINDS = (tarfile.REGTYPE, tarfile.AREGTYPE)


@dataclass(frozen=True)
class BundleLimits:
    """Caps on what a bundle may make the reader hold or walk (hostile files)."""

    manifest: int = 64 * 1024
    metadata_file: int = MetadataCaps().targets
    """No metadata file may be larger than the largest per-role cap of the Primary."""
    metadata_total: int = 64 * 1024 * 1024
    members: int = 4096


@dataclass(frozen=True)
class BundleManifest:
    """``manifest.json``: which vehicle and campaign the bundle is for. Not signed: the
    vehicle's verification of the metadata decides what is installed, this only names it."""

    vin: str
    campaign: str
    consent_required: bool = False
    release_notes_url: str = ""
    created: str = ""
    """When the cloud built the bundle (ISO 8601, UTC)."""
    expires: str = ""
    """The earliest expiry of the metadata inside (ISO 8601): after it the bundle is refused."""

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> BundleManifest:
        try:
            doc = strict_json(data, MANIFEST)
        except BundleError as exc:
            raise OfflineBundleError(str(exc)) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise OfflineBundleError(f"{MANIFEST} is not a {FORMAT} manifest")
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise OfflineBundleError(
                f"bundle format version {version!r} is not supported (this reads {FORMAT_VERSION})"
            )
        return cls(
            vin=_text(doc, "vin", required=True),
            campaign=_text(doc, "campaign", required=True),
            consent_required=_flag(doc, "consent_required"),
            release_notes_url=_text(doc, "release_notes_url"),
            created=_text(doc, "created"),
            expires=_text(doc, "expires"),
        )


def _text(doc: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or (required and not value) or len(value) > 2048:
        raise OfflineBundleError(f"{MANIFEST}: {key} must be a string of at most 2048 characters")
    return value


def _flag(doc: Mapping[str, Any], key: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise OfflineBundleError(f"{MANIFEST}: {key} must be true or false")
    return value


def metadata_member(repository: str, filename: str) -> str:
    """The member name of a published metadata file: ``director/3.targets.json``."""
    return f"{repository}/{filename}"


def target_member(sha256: str) -> str:
    """The member name of a target: content-addressed, ``targets/<sha256>``."""
    return f"{TARGETS}/{sha256}"


def _kind_of(name: str) -> str | None:
    """``manifest``, ``metadata`` or ``target`` for a well-formed member name, else None."""
    if name == MANIFEST:
        return "manifest"
    directory, slash, base = name.partition("/")
    if not slash:
        return None
    if directory in REPOSITORIES and _METADATA_FILE.fullmatch(base):
        return "metadata"
    if directory == TARGETS and _SHA256.fullmatch(base):
        return "target"
    return None


# --- writing -------------------------------------------------------------------------------

Member = tuple[str, int, Callable[[], Iterable[bytes]]]
"""(member name, exact size, a function giving its bytes) for :func:`tar_stream`."""


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _padding(size: int) -> int:
    return -size % tarfile.BLOCKSIZE


def tar_size(members: Iterable[tuple[str, int]], mtime: int) -> int:
    """The exact length :func:`tar_stream` produces for these (name, size) members."""
    total = sum(len(_header(n, s, mtime)) + s + _padding(s) for n, s in members)
    total += 2 * tarfile.BLOCKSIZE
    return total + (-total % RECORD)


def tar_stream(members: Iterable[Member], mtime: int) -> Iterator[bytes]:
    """An uncompressed POSIX (pax) tar of ``members``, produced as it streams.

    Each member must yield exactly its announced size, else ``OfflineBundleError``
    (a short blob in the store must not make a bundle that only fails in the car).
    """
    total = 0
    for name, size, chunks in members:
        if _kind_of(name) is None:
            raise OfflineBundleError(f"not a bundle member name: {name!r}")
        header = _header(name, size, mtime)
        yield header
        written = 0
        for chunk in chunks():
            written += len(chunk)
            if written > size:
                break
            yield chunk
        if written != size:
            raise OfflineBundleError(f"{name}: got {written} bytes for a member of {size}")
        yield b"\0" * _padding(size)
        total += len(header) + size + _padding(size)
    total += 2 * tarfile.BLOCKSIZE
    yield b"\0" * (2 * tarfile.BLOCKSIZE + (-total % RECORD))


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    offset: int
    size: int


class OfflineBundle:
    """A bundle file whose structure was checked: members indexed, manifest parsed.

    Nothing here is verified yet; :class:`OfflinePrimary` does that. The file is
    reopened for every read (no handle is held), so threads may read at once.
    """

    def __init__(self, path: Path, manifest: BundleManifest, members: Mapping[str, _Span]):
        self.path = path
        self.manifest = manifest
        self._members = dict(members)

    @classmethod
    def open(cls, path: Path, limits: BundleLimits = BundleLimits()) -> OfflineBundle:
        """Index ``path``; any hostile or malformed member is a one-line error."""
        path = Path(path)
        members = _index(path, limits)
        manifest = members.get(MANIFEST)
        if manifest is None:
            raise OfflineBundleError(f"{path.name}: no {MANIFEST}; not an offline bundle")
        return cls(path, BundleManifest.from_bytes(_read(path, MANIFEST, manifest)), members)

    def names(self) -> list[str]:
        return sorted(self._members)

    def metadata(self, name: str) -> bytes | None:
        """A metadata member's bytes (``director/timestamp.json``), None when absent."""
        span = self._members.get(name)
        if span is None or _kind_of(name) != "metadata":
            return None
        return _read(self.path, name, span)

    def _target(self, target: VerifiedTarget) -> _Span:
        span = self._members.get(target_member(target.sha256))
        if span is None:
            raise OfflineBundleError(
                f"bundle lacks target {target.filename} (sha256 {target.sha256[:16]}…)"
            )
        if span.size != target.length:
            raise OfflineBundleError(
                f"bundle target {target.filename} has {span.size} bytes, "
                f"the verified length is {target.length}"
            )
        return span

    def check_target(self, target: VerifiedTarget) -> None:
        """Raise unless the bundle holds the target at its verified length."""
        self._target(target)

    def copy_target(
        self, target: VerifiedTarget, dest: Path, progress: Progress | None = None
    ) -> Path:
        """Copy a verified target to ``dest``, hashing as it goes: ``dest`` only gets its
        name when length and sha256 match (the cache's ``Fetch`` contract)."""
        span = self._target(target)
        part = dest.with_name(dest.name + ".part")
        digest, done = hashlib.sha256(), 0
        try:
            with self.path.open("rb") as src, part.open("wb") as out:
                src.seek(span.offset)
                while done < span.size:
                    chunk = src.read(min(CHUNK, span.size - done))
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, span.size)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise OfflineBundleError(
                f"cannot copy {target.filename} from {self.path}: {exc.strerror or exc}"
            ) from None
        if done != span.size or digest.hexdigest() != target.sha256:
            part.unlink(missing_ok=True)
            raise OfflineBundleError(
                f"bundle target {target.filename}: content does not match the verified "
                "sha256 (damaged or tampered bundle)"
            )
        part.replace(dest)
        return dest


def _read(path: Path, name: str, span: _Span) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(span.offset)
            data = f.read(span.size)
    except OSError as exc:
        raise OfflineBundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) != span.size:
        raise OfflineBundleError(f"{path.name}: {name} is cut short")
    return data


def _index(path: Path, limits: BundleLimits) -> dict[str, _Span]:
    """Every member's name and data span, after the structural checks."""
    try:
        file_size = path.stat().st_size
        with tarfile.open(path, "r:") as tar:
            members = _walk(tar, path.name, file_size, limits)
            _check_end(tar, path.name, file_size)
            return members
    except OfflineBundleError:
        raise
    except FileNotFoundError:
        raise OfflineBundleError(f"no bundle at {path}") from None
    except OSError as exc:
        raise OfflineBundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tarfile.TarError, EOFError, ValueError, UnicodeError) as exc:
        raise OfflineBundleError(f"{path.name} is not an uncompressed tar file: {exc}") from None


def _walk(
    tar: tarfile.TarFile, label: str, file_size: int, limits: BundleLimits
) -> dict[str, _Span]:
    members: dict[str, _Span] = {}
    metadata_total = 0
    while (member := tar.next()) is not None:
        name = member.name
        where = f"{label}: member {name[:200]!r}"
        if len(members) >= limits.members:
            raise OfflineBundleError(f"{label}: more than {limits.members} members")
        if member.type not in _MEMBER_KINDS or member.sparse is not None:
            raise OfflineBundleError(f"{where} is not a regular file ({_type_name(member)})")
        kind = _kind_of(name)
        if kind is None:
            raise OfflineBundleError(
                f"{where}: not a bundle file name (manifest.json, director/<metadata>, "
                "image/<metadata>, targets/<sha256>)"
            )
        if name in members:
            raise OfflineBundleError(f"{where} appears twice")
        if member.offset_data + member.size > file_size:
            raise OfflineBundleError(f"{where} runs past the end of the file (cut short?)")
        if kind == "manifest" and member.size > limits.manifest:
            raise OfflineBundleError(f"{where}: {member.size} bytes exceed {limits.manifest}")
        if kind == "metadata":
            if member.size > limits.metadata_file:
                raise OfflineBundleError(
                    f"{where}: {member.size} bytes exceed {limits.metadata_file}"
                )
            metadata_total += member.size
            if metadata_total > limits.metadata_total:
                raise OfflineBundleError(
                    f"{label}: metadata exceeds {limits.metadata_total} bytes in total"
                )
        members[name] = _Span(member.offset_data, member.size)
    return members


def _check_end(tar: tarfile.TarFile, label: str, file_size: int) -> None:
    """tarfile stops quietly at a damaged header; only zero blocks may follow the end."""
    rest = file_size - tar.offset
    if rest > MAX_TRAILER:
        raise OfflineBundleError(f"{label}: {rest} bytes follow the end of the archive")
    tar.fileobj.seek(tar.offset)
    if tar.fileobj.read(rest).strip(b"\0"):
        raise OfflineBundleError(f"{label}: a damaged member header at byte {tar.offset}")


def _type_name(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.isdir():
        return "a directory"
    if member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE:
        return "a sparse file"
    if member.isdev():
        return "a device or FIFO"
    return f"tar type {member.type!r}"


# --- verifying -----------------------------------------------------------------------------


class BundleFetcher(FetcherInterface):
    """The ngclient fetcher of an offline bundle: ``bundle:<repository>/<file>`` is the
    member of that name; an absent one is a 404, which ends the root-chain walk."""

    def __init__(self, bundle: OfflineBundle) -> None:
        self.bundle = bundle

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.removeprefix(URL_SCHEME)
        try:
            data = self.bundle.metadata(name) if url.startswith(URL_SCHEME) else None
        except OfflineBundleError as exc:
            raise tuf_errors.DownloadError(str(exc)) from None
        if data is None:
            raise tuf_errors.DownloadHTTPError(f"the bundle has no {name}", 404)
        return iter((data,))


class OfflinePrimary:
    """The Master's Primary (``uptane.primary.PrimarySource``) over a bundle file.

    ``refresh`` verifies in a scratch copy of the vehicle's metadata cache and
    writes the result back only once the bundle is known to be for this vehicle
    (every ECU the director names is one of ``serials``) and holds every target
    it names: the director's keys are shared by all vehicles, so another vehicle's
    director metadata verifies too and must never raise this vehicle's rollback
    floor. ``image_target`` (the image a UDS ECU runs now, for its rollback)
    reads the image repository, which is the same for every vehicle, in place.
    """

    def __init__(
        self,
        bundle: OfflineBundle,
        *,
        vin: str,
        serials: Collection[str],
        roots: TrustedRoots,
        metadata_dir: Path,
        clock: Clock = system_clock,
        caps: MetadataCaps | None = None,
    ) -> None:
        if bundle.manifest.vin != vin:
            raise OfflineBundleError(f"bundle is for vehicle {bundle.manifest.vin}, this is {vin}")
        self.bundle = bundle
        self.vin = vin
        self._serials = frozenset(serials)
        self._roots = roots
        self._metadata_dir = Path(metadata_dir)
        self._clock = clock
        self._caps = caps or MetadataCaps()

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        vin: str,
        serials: Collection[str],
        roots: TrustedRoots,
        metadata_dir: Path,
        clock: Clock = system_clock,
        limits: BundleLimits = BundleLimits(),
    ) -> OfflinePrimary:
        """Open and structurally check ``path``; refuse a bundle for another VIN."""
        bundle = OfflineBundle.open(path, limits)
        return cls(
            bundle, vin=vin, serials=serials, roots=roots, metadata_dir=metadata_dir, clock=clock
        )

    def _verifier(self, cache_dir: Path) -> PrimaryVerifier:
        config = PrimaryConfig(
            director_url=f"{URL_SCHEME}{DIRECTOR}/",
            image_url=f"{URL_SCHEME}{IMAGE}/",
            image_targets_url=f"{URL_SCHEME}{TARGETS}/",
            cache_dir=cache_dir,
            caps=self._caps,
        )
        return PrimaryVerifier(
            config, self._roots, clock=self._clock, metadata_fetcher=BundleFetcher(self.bundle)
        )

    def refresh(
        self, ecus: Mapping[str, EcuState] | None = None, previous: MetadataBundle | None = None
    ) -> PrimaryResult:
        """Full verification of the bundle's metadata, as ``PrimaryVerifier.refresh``."""
        with tempfile.TemporaryDirectory(prefix="redstone-bundle-") as tmp:
            scratch = Path(tmp)
            _copy_cache(self._metadata_dir, scratch)
            result = self._verifier(scratch).refresh(ecus, previous)
            self._check(result)
            _persist_cache(scratch, self._metadata_dir)
        log.info(
            "bundle %s verified: campaign %s, %d ECU assignment(s)",
            self.bundle.path.name,
            self.bundle.manifest.campaign,
            len(result.targets),
        )
        return result

    def _check(self, result: PrimaryResult) -> None:
        lacking = sorted(set(result.targets) - self._serials)
        if lacking:
            raise OfflineBundleError(
                f"bundle is not for this vehicle ({self.vin}): its director assigns "
                f"ECU {', '.join(lacking)}, which this vehicle lacks"
            )
        if not result.targets:
            raise OfflineBundleError("the bundle's director assigns no image to this vehicle")
        for target in result.targets.values():
            self.bundle.check_target(target)

    def image_target(self, path: str, serial: str, hardware_id: str) -> VerifiedTarget:
        """As ``PrimaryVerifier.image_target``, and the bundle must hold the image."""
        self._metadata_dir.mkdir(parents=True, exist_ok=True)
        target = self._verifier(self._metadata_dir).image_target(path, serial, hardware_id)
        self.bundle.check_target(target)
        return target

    def download(
        self, target: VerifiedTarget, dest: Path, progress: Progress | None = None
    ) -> Path:
        """Copy a verified target out of the bundle (hash-checked), as a download would."""
        return self.bundle.copy_target(target, dest, progress)


def _copy_cache(live: Path, scratch: Path) -> None:
    for repository in REPOSITORIES:
        source = live / repository
        if source.is_dir():
            shutil.copytree(source, scratch / repository, symlinks=True)


def _persist_cache(scratch: Path, live: Path) -> None:
    """Write what the verification accepted into the live cache, file by file (each
    atomically); roots first and the timestamp last, as ngclient itself persists."""
    files = [p for p in scratch.rglob("*.json") if p.is_file() and not p.is_symlink()]
    files.sort(key=lambda p: (p.parent.name != "root_history", p.name == "timestamp.json", p))
    for path in files:
        dest = live / path.relative_to(scratch)
        data = path.read_bytes()
        try:
            same = dest.read_bytes() == data
        except OSError:
            same = False
        if not same:
            atomic_write(dest, data, mode=0o644)
