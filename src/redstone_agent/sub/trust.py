"""The Sub's own Uptane checks: a compromised Master cannot choose what we install.

PutMetadata hands us the bundle the Master verified; we verify it again with
roots from our own storage (full or partial verification, as configured)
and keep only the target the director assigned to *our* serial. Install is
then accepted only when it names exactly that target (name, length, sha256,
delta source).

A delta assignment signs the *delta file* (its length and sha256) and the
image it applies to, not the image it builds. Its Install therefore carries
the delta's signed fields in ``delta`` and the resulting image's in
``sha256``/``length``; those two are authenticated through the delta — its
header names them, and the slot layer refuses any delta bytes other than the
signed ones before it primes the slot (docs/uptane.md §3, docs/someip.md).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redstone_agent.journal import Journal, JournalCorrupt, atomic_write
from redstone_agent.someip.messages import InstallRequest
from redstone_agent.sub.config import TrustConfig
from redstone_agent.sub.errors import NoMetadata, VerificationFailed

if TYPE_CHECKING:
    from redstone_agent.uptane.bundle import MetadataBundle
    from redstone_agent.uptane.verifier import EcuState, VerificationResult

# python-tuf is imported on the first PutMetadata, not at start: an idle Sub
# then stays within its memory budget (tools/bench/someip.py, rss_idle_mib).

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assignment:
    """The verified target for this ECU, as journaled between PutMetadata and commit."""

    filename: str
    length: int
    sha256: str
    release_counter: int
    delta_source_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Assignment:
        return cls(**data)


ACCEPTED_JOURNAL = "metadata.json"
"""In ``state_dir``: what the last accepted bundle proved (anti-rollback of metadata)."""
FLOOR_ROLES = ("timestamp", "snapshot")


class SubTrust:
    """Verifies bundles for one ECU; persists rotated roots and accepted metadata in ``state_dir``.

    Anti-rollback of metadata (docs/uptane.md §1): after each bundle that
    verifies, the timestamp and snapshot of both repositories and the
    director's targets version are journaled (atomic, checksummed), and the
    next verification is seeded with them as python-tuf's ``previous`` —
    so a compromised Master cannot replay an older bundle that is still
    signed and unexpired, not even after a reboot. A bundle of the same
    versions (the Master repeating itself) is accepted.
    """

    def __init__(self, config: TrustConfig, ecu_serial: str, hardware_id: str, state_dir: Path):
        self._config = config
        self._serial = ecu_serial
        self._hardware_id = hardware_id
        self._state_dir = state_dir
        self._accepted = Journal(state_dir / ACCEPTED_JOURNAL)

    def _rotated(self, name: str) -> Path:
        """Where a root this Sub verified during a rotation is kept (it wins over config)."""
        return self._state_dir / f"{name}.root.json"

    def _root(self, name: str, configured: Path) -> bytes:
        rotated = self._rotated(name)
        path = rotated if rotated.exists() else configured
        try:
            return path.read_bytes()
        except OSError as exc:
            raise VerificationFailed(f"cannot read trusted {name} root {path}: {exc}") from exc

    def verify(self, bundle_bytes: bytes, installed_release_counter: int) -> Assignment:
        """Verify a forwarded bundle; return our assignment or raise VerificationFailed."""
        from redstone_agent.uptane.bundle import MetadataBundle
        from redstone_agent.uptane.errors import UptaneError
        from redstone_agent.uptane.verifier import EcuState

        state = EcuState(self._hardware_id, installed_release_counter)
        previous = self._previous()
        try:
            bundle = MetadataBundle.from_bytes(bundle_bytes)
            result = self._run(bundle, state, previous)
        except UptaneError as exc:
            raise VerificationFailed(f"metadata rejected: {exc}") from exc
        self._persist_roots(result)
        self._persist_accepted(bundle, result, previous)
        target = result.targets.get(self._serial)
        if target is None:
            raise VerificationFailed(f"the director assigns nothing to ECU {self._serial}")
        return Assignment(
            target.filename,
            target.length,
            target.sha256,
            target.release_counter,
            target.delta_source_sha256,
        )

    def _run(
        self, bundle: MetadataBundle, state: EcuState, previous: Accepted
    ) -> VerificationResult:
        from redstone_agent.uptane.bundle import DIRECTOR, IMAGE
        from redstone_agent.uptane.verifier import TrustedRoots, verify_full, verify_partial

        director = self._root(DIRECTOR, self._config.director_root)
        if self._config.verification == "partial":
            return verify_partial(
                bundle,
                director,
                self._serial,
                ecu=state,
                previous_targets_version=previous.director_targets_version,
            )
        if self._config.image_root is None:
            raise VerificationFailed("full verification configured but trust.image_root unset")
        roots = TrustedRoots(director, self._root(IMAGE, self._config.image_root))
        return verify_full(
            bundle,
            roots,
            ecus={self._serial: state},
            only_known_ecus=True,
            previous=previous.bundle(),
        )

    def _previous(self) -> Accepted:
        """The journaled floor; nothing (with an error logged) if the journal is unreadable.

        Like python-tuf's Updater with a corrupt local timestamp: the Master
        cannot write our state directory, so only failing media gets here, and
        refusing every bundle would strand the ECU for good.
        """
        try:
            saved = self._accepted.load()
            return Accepted.from_dict(saved) if saved is not None else Accepted()
        except (JournalCorrupt, KeyError, TypeError, ValueError) as exc:
            log.error("%s unreadable (%s): metadata rollback floor lost", self._accepted.path, exc)
            return Accepted()

    def _persist_accepted(
        self, bundle: MetadataBundle, result: VerificationResult, previous: Accepted
    ) -> None:
        roles = {
            name: {role: repo.roles[role] for role in FLOOR_ROLES if role in repo.roles}
            for name, repo in bundle.repositories.items()
        }
        accepted = Accepted(
            {name: found for name, found in roles.items() if found} or previous.roles,
            max(result.director_targets_version, previous.director_targets_version),
        )
        # Durable before the caller acts on the assignment: a power cut after
        # this leaves the floor raised, before it leaves the old one (and the
        # same bundle verifies again).
        self._accepted.save(accepted.to_dict())

    def _persist_roots(self, result: VerificationResult) -> None:
        # Durable replace: a power cut must not leave an empty root file, which
        # would make every later bundle fail verification.
        for name, root in result.new_roots.items():
            path = self._rotated(name)
            atomic_write(path, root)
            log.info("trusted %s root rotated; stored %s", name, path)


@dataclass(frozen=True)
class Accepted:
    """What the last accepted bundle proved: the versions no later bundle may go below.

    ``roles`` keeps each repository's timestamp and snapshot *bytes*, verbatim:
    python-tuf compares a new timestamp's and snapshot's versions (and the
    snapshot's version of every targets role) against them, and ignores them
    after a key rotation made them unverifiable (TUF's fast-forward recovery).
    ``director_targets_version`` is the floor of partial verification.
    """

    roles: dict[str, dict[str, bytes]] = field(default_factory=dict)
    director_targets_version: int = 0

    def bundle(self) -> MetadataBundle | None:
        from redstone_agent.uptane.bundle import MetadataBundle, RepositoryMetadata

        if not self.roles:
            return None
        return MetadataBundle(
            {name: RepositoryMetadata((), dict(roles)) for name, roles in self.roles.items()}
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "roles": {
                name: {role: base64.b64encode(data).decode() for role, data in roles.items()}
                for name, roles in self.roles.items()
            },
            "director_targets_version": self.director_targets_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Accepted:
        roles = {
            str(name): {
                str(role): base64.b64decode(text, validate=True) for role, text in r.items()
            }
            for name, r in data["roles"].items()
        }
        version = data["director_targets_version"]
        if not isinstance(version, int):
            raise TypeError("director_targets_version is not an integer")
        return cls(roles, version)


def check_install(assignment: Assignment | None, request: InstallRequest) -> None:
    """Refuse an Install that differs in any way from the verified assignment.

    Full-image assignment: target, length and sha256 are the signed ones; a
    delta may be offered too (unsigned, so its result is checked by hash).
    Delta assignment: target is the signed delta's name and ``request.delta``
    its signed length, sha256 and source; ``request.sha256``/``length`` name
    the result, which the delta's header and the slot layer vouch for.
    """
    if assignment is None:
        raise NoMetadata("no verified metadata: call PutMetadata first")
    problems = []
    if request.target != assignment.filename:
        problems.append(f"target {request.target!r} is not the assigned {assignment.filename!r}")
    if assignment.delta_source_sha256 is None:
        if request.length != assignment.length:
            problems.append(f"length {request.length} != verified {assignment.length}")
        if request.sha256.hex() != assignment.sha256:
            problems.append("sha256 differs from the verified hash")
    else:
        problems.extend(_delta_problems(assignment, assignment.delta_source_sha256, request))
    if problems:
        raise VerificationFailed("install refused: " + "; ".join(problems))


def _delta_problems(assignment: Assignment, source: str, request: InstallRequest) -> list[str]:
    """How the request's delta differs from the signed delta file (empty: it does not)."""
    delta = request.delta
    if delta is None:
        return ["the assignment is a delta, the request names none"]
    problems = []
    if delta.length != assignment.length:
        problems.append(f"delta length {delta.length} != verified {assignment.length}")
    if delta.sha256.hex() != assignment.sha256:
        problems.append("delta sha256 differs from the verified hash")
    if delta.source_sha256.hex() != source:
        problems.append("delta source differs from the verified one")
    return problems


class ManifestSigner:
    """Signs ECU version manifests with the ECU key, loaded on first use (keeps start lean).

    The document is ``redstone_agent.uptane.manifests.EcuManifest`` in its
    signed envelope, so the Master and the backend verify it with
    ``verify_ecu_manifest`` against the key registered for this ECU.
    """

    def __init__(self, key_path: Path) -> None:
        self._key_path = key_path
        self._signer: Any = None

    def __call__(self, fields: dict[str, Any]) -> bytes:
        from redstone_agent.uptane.manifests import EcuManifest, canonical, sign_ecu_manifest

        if self._signer is None:
            from redstone_agent.uptane.keys import load_signer

            self._signer = load_signer(self._key_path)
        return canonical(sign_ecu_manifest(EcuManifest(**fields), self._signer))
