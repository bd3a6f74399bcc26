"""The director's online keys as files: one per top-level role, rotated in place.

Default layout under ``data_dir/keys`` (each path configurable in ``[cloud]``)::

    director-online.pem          root   (``director_online_key``; before per-role keys
                                         this one key signed every role, so an old
                                         data_dir keeps its root and only gains the rest)
    director-targets.pem         targets    (``director_targets_key``)
    director-snapshot.pem        snapshot   (``director_snapshot_key``)
    director-timestamp.pem       timestamp  (``director_timestamp_key``)
    retired/<role>-<keyid>.pem   every key a rotation replaced, kept for good

A missing key is generated (0600) on first use. :meth:`DirectorKeyFiles.rotate`
first copies the current key into ``retired/``, then atomically replaces the
role's file. A role's file may hold a ``pkcs11:`` URI instead of a PEM key
(docs/keys.md): its key is on a token, and rotating it makes the new key on the
same token (``rotate(..., to_token=URI)`` moves roles onto a token); the file
then holds the new key's URI, and the retired copy the old one's. Serving
processes notice the new file by its identity on their next signing
(:meth:`DirectorKeyFiles.keys`), and each vehicle's director moves to the new
keys at its next contact (``uptane_link.OnlineRepository``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from redstone_agent.errors import RedstoneError
from redstone_agent.journal.store import atomic_write
from redstone_agent.uptane.keys import signer_from_uri
from redstone_cloud.errors import InvalidInput
from redstone_cloud.settings import Settings
from redstone_cloud.uptane_link import (
    OnlineKeys,
    Signer,
    generate_signer,
    load_signer,
    private_pem,
    save_signer,
)

ROLES = ("root", "targets", "snapshot", "timestamp")

_Stamp = tuple[int, int, int]


@dataclass(frozen=True)
class Rotated:
    """One role's rotation: the key it had and the key it has now."""

    role: str
    old_keyid: str
    new_keyid: str


def _stamp(path: Path) -> _Stamp:
    st = path.stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class DirectorKeyFiles:
    """The director's key files; :meth:`keys` is what the director signs with."""

    def __init__(self, paths: Mapping[str, Path], retired_dir: Path) -> None:
        missing = [role for role in ROLES if role not in paths]
        if missing:
            raise InvalidInput(f"director keys: no path for {', '.join(missing)}")
        self.paths = dict(paths)
        self.retired_dir = retired_dir
        self._lock = threading.Lock()
        self._stamps: dict[str, _Stamp] = {}
        self._keys: OnlineKeys | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DirectorKeyFiles:
        keys = settings.key_dir
        paths = {
            "root": settings.director_online_key or keys / "director-online.pem",
            "targets": settings.director_targets_key or keys / "director-targets.pem",
            "snapshot": settings.director_snapshot_key or keys / "director-snapshot.pem",
            "timestamp": settings.director_timestamp_key or keys / "director-timestamp.pem",
        }
        return cls(paths, keys / "retired")

    def keys(self) -> OnlineKeys:
        """The current signers (generating missing keys), reloaded when a file changed."""
        with self._lock:
            try:
                for path in self.paths.values():
                    if not path.exists():
                        self._generate(path)
                stamps = {role: _stamp(path) for role, path in self.paths.items()}
                if self._keys is None or stamps != self._stamps:
                    self._keys = self._load()
                    self._stamps = stamps
            except OSError as exc:
                raise InvalidInput(f"director keys: {exc.filename}: {exc.strerror}") from exc
            except RedstoneError as exc:
                raise InvalidInput(f"director keys: {exc}") from exc
            return self._keys

    def rotate(self, roles: Iterable[str], *, to_token: str | None = None) -> list[Rotated]:
        """Give each of ``roles`` a new key; the old one is kept in ``retired/`` first.

        The new key is a file key, or on a token: the one ``to_token`` names, else
        the token the role's key is on already."""
        wanted = list(dict.fromkeys(roles))
        unknown = [role for role in wanted if role not in ROLES]
        if unknown:
            raise InvalidInput(f"no director role {unknown[0]!r} (roles: {', '.join(ROLES)})")
        current = self.keys()
        done = []
        try:
            for role in wanted:
                old = current.signer(role)
                keyid = str(old.public_key.keyid)
                held = self.paths[role].read_bytes()
                atomic_write(self.retired_dir / f"{role}-{keyid}.pem", held)
                on_token = to_token or (
                    held.decode().strip() if held.startswith(b"pkcs11:") else None
                )
                if on_token is None:
                    new = generate_signer("ed25519")
                    atomic_write(self.paths[role], private_pem(new))
                else:
                    where = _new_token_key(on_token, role)
                    new = signer_from_uri(where, f"director {role} key")
                    atomic_write(self.paths[role], (where + "\n").encode())
                done.append(Rotated(role, keyid, str(new.public_key.keyid)))
        except OSError as exc:
            raise InvalidInput(f"director keys: {exc.filename}: {exc.strerror}") from exc
        except RedstoneError as exc:
            raise InvalidInput(f"director keys: {exc}") from exc
        return done

    def location(self, role: str) -> str:
        """Where the role's key is, as the audit trail records it (no PIN, no module)."""
        on_token = _token_uri(self.paths[role].read_bytes())
        if on_token is not None:
            return on_token.split("?", 1)[0]
        return f"file {self.paths[role].name}"

    def _generate(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first
            save_signer(generate_signer("ed25519"), path)

    def _load(self) -> OnlineKeys:
        current = {role: load_signer(path) for role, path in self.paths.items()}
        retired: dict[str, Signer] = {}
        if self.retired_dir.is_dir():
            for path in sorted(self.retired_dir.glob("*.pem")):
                signer = load_signer(path)
                retired[str(signer.public_key.keyid)] = signer
        return OnlineKeys(current, retired)


def _token_uri(held: bytes) -> str | None:
    """The URI a role's key file holds, if the key is on a token."""
    return held.decode().strip() if held.startswith(b"pkcs11:") else None


def _new_token_key(uri_text: str, role: str) -> str:
    """Make a key for ``role`` on the token ``uri_text`` names; return its URI.

    Its label is ``<base>-<role>-<8 hex>``: ``base`` is the URI's object, less the
    ``-<role>-<hex>`` of an earlier rotation, so labels do not grow."""
    from redstone_agent.pkcs11 import token, uri

    try:
        parsed = uri.parse(uri_text)
        base = re.sub(rf"-{role}-[0-9a-f]{{8}}$", "", parsed.object)
        fresh = dataclasses.replace(parsed, object=f"{base}-{role}-{secrets.token_hex(4)}", id=None)
        token.generate(fresh, prefer=token.ED25519).close()
    except (uri.UriError, token.TokenError) as exc:
        raise InvalidInput(f"director {role} key: {exc}") from None
    return fresh.full()
