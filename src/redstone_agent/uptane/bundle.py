"""The metadata bundle: the exact metadata bytes a Primary verified, forwarded to Subs.

A Sub must verify the *same signed bytes* the Primary checked (not a
re-serialisation), so the bundle carries each file verbatim, base64-encoded
inside a small JSON envelope (specified in docs/uptane.md)::

    {"format": "redstone-uptane-bundle", "version": 1,
     "repositories": {
        "director": {"roots": ["<b64 1.root.json>", ...],
                     "roles": {"timestamp": "<b64>", "snapshot": "<b64>", "targets": "<b64>"}},
        "image":    {"roots": [...], "roles": {..., "<supplier role>": "<b64>"}}}}

``roots`` is the root chain in version order; a Sub applies the versions
newer than the root it trusts. A partial-verification bundle may hold only
the director with only its ``targets`` role.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redstone_agent.uptane.errors import BundleError

FORMAT = "redstone-uptane-bundle"
FORMAT_VERSION = 1
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_INT_DIGITS = 40
"""No integer in metadata needs more digits (versions and lengths fit in 64 bits)."""
DIRECTOR = "director"
IMAGE = "image"


@dataclass(frozen=True)
class RepositoryMetadata:
    """One repository's metadata files, verbatim."""

    roots: tuple[bytes, ...]
    roles: Mapping[str, bytes] = field(default_factory=dict)

    def size(self) -> int:
        return sum(map(len, self.roots)) + sum(map(len, self.roles.values()))


@dataclass(frozen=True)
class MetadataBundle:
    """Director (always) and image repository (absent for partial verification)."""

    repositories: Mapping[str, RepositoryMetadata]

    def repository(self, name: str) -> RepositoryMetadata:
        try:
            return self.repositories[name]
        except KeyError:
            raise BundleError(f"metadata bundle lacks the {name} repository") from None

    def size(self) -> int:
        """Total bytes of metadata carried (what the benchmark reports)."""
        return sum(repo.size() for repo in self.repositories.values())

    def for_partial_verification(self) -> MetadataBundle:
        """Only what a partial-verification Sub needs: director roots and targets."""
        director = self.repository(DIRECTOR)
        roles = {"targets": director.roles["targets"]} if "targets" in director.roles else {}
        return MetadataBundle({DIRECTOR: RepositoryMetadata(director.roots, roles)})

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "repositories": {
                name: {
                    "roots": [_b64(r) for r in repo.roots],
                    "roles": {role: _b64(data) for role, data in sorted(repo.roles.items())},
                }
                for name, repo in sorted(self.repositories.items())
            },
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> MetadataBundle:
        """Parse a bundle; anything malformed or oversized is a :class:`BundleError`."""
        if len(data) > max_bytes:
            raise BundleError(f"metadata bundle of {len(data)} bytes exceeds {max_bytes}")
        doc = strict_json(data, "metadata bundle")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BundleError("not a redstone-uptane-bundle document")
        if doc.get("version") != FORMAT_VERSION:
            raise BundleError(f"unsupported bundle version {doc.get('version')!r}")
        repos = doc.get("repositories")
        if not isinstance(repos, dict) or DIRECTOR not in repos:
            raise BundleError("metadata bundle lacks the director repository")
        parsed = {}
        for name, repo in repos.items():
            if name not in (DIRECTOR, IMAGE):
                raise BundleError(f"unknown repository {name!r} in bundle")
            parsed[name] = _parse_repository(name, repo)
        return cls(parsed)


class _NotStrictJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotStrictJson(f"non-finite number {name} is not JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NotStrictJson(f"integer of {len(text)} digits is out of range")
    return int(text)


def strict_json(data: bytes, what: str) -> Any:
    """Parse untrusted JSON as RFC 8259 does, or raise one-line :class:`BundleError`.

    Refused without reaching odd code paths: invalid UTF-8 and lone UTF-16
    surrogates (``"\\ud800"`` decodes but can never be encoded again), the
    non-standard ``NaN``/``Infinity``, integers beyond :data:`MAX_INT_DIGITS`
    digits, and nesting deep enough to exhaust the parser's recursion.
    """
    try:
        text = data.decode("utf-8")
        doc = json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int)
        json.dumps(doc, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
    except RecursionError:
        raise BundleError(f"{what} is nested too deeply") from None
    except UnicodeError as exc:
        raise BundleError(
            f"{what} is not valid UTF-8 text ({getattr(exc, 'reason', exc)})"
        ) from None
    except ValueError as exc:  # JSONDecodeError, _NotStrictJson
        raise BundleError(f"{what} is not JSON: {exc}") from None
    return doc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise BundleError(f"{where}: expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleError(f"{where}: bad base64 ({exc})") from exc


def _parse_repository(name: str, repo: Any) -> RepositoryMetadata:
    if not isinstance(repo, dict):
        raise BundleError(f"{name}: expected an object")
    roots, roles = repo.get("roots"), repo.get("roles")
    if not isinstance(roots, list) or not roots:
        raise BundleError(f"{name}: roots must be a non-empty list")
    if not isinstance(roles, dict):
        raise BundleError(f"{name}: roles must be an object")
    return RepositoryMetadata(
        tuple(_unb64(r, f"{name} root") for r in roots),
        {str(role): _unb64(data, f"{name} {role}") for role, data in roles.items()},
    )
