"""RFC 7512 ``pkcs11:`` URIs, as far as Redstone uses them. Pure code, no I/O.

``pkcs11:token=Redstone%20CA;object=ca-root?module-path=/usr/lib/softhsm/libsofthsm2.so
&pin-source=file:/etc/redstone/ca.pin``

Path attributes (before ``?``, separated by ``;``) say which key: ``token`` (the
token label), ``object`` (the key label), optionally ``id`` (CKA_ID,
percent-encoded bytes), ``serial`` and ``manufacturer`` (of the token) and
``type`` (``private`` is the only one a signer looks for). Query attributes
(after ``?``, separated by ``&``) say how to reach it: ``module-path`` (the
PKCS#11 library) and ``pin-source`` (a ``file:`` URI or a path; the PIN is
the file's first line). ``pin-value`` is refused: a PIN in a URI ends up on
command lines, in shell history and in process listings. Unknown attributes are
refused too, so a typo is an error rather than a different key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes

from redstone_agent.errors import RedstoneError

SCHEME = "pkcs11:"
_PATH_ATTRS = frozenset({"token", "object", "id", "serial", "manufacturer", "type"})
_QUERY_ATTRS = frozenset({"module-path", "pin-source"})


class UriError(RedstoneError):
    """A PKCS#11 URI that cannot name a key (one line, naming the attribute)."""


@dataclass(frozen=True)
class Pkcs11Uri:
    token: str
    object: str
    id: bytes | None = None
    serial: str | None = None
    manufacturer: str | None = None
    module_path: Path | None = None
    pin_source: Path | None = None

    def full(self) -> str:
        """The URI with its query: what a key file or a config holds (never a PIN)."""
        query = []
        if self.module_path is not None:
            query.append(f"module-path={self.module_path}")
        if self.pin_source is not None:
            query.append(f"pin-source=file:{self.pin_source}")
        return str(self) + ("?" + "&".join(query) if query else "")

    def __str__(self) -> str:
        """The URI without its query (what logs and the audit trail show)."""
        parts = [f"token={_quote(self.token)}", f"object={_quote(self.object)}"]
        if self.id is not None:
            parts.append("id=" + "".join(f"%{b:02x}" for b in self.id))
        if self.serial is not None:
            parts.append(f"serial={_quote(self.serial)}")
        return SCHEME + ";".join(parts)


def is_pkcs11_uri(text: str) -> bool:
    return text.startswith(SCHEME)


def parse(text: str) -> Pkcs11Uri:
    """The key a ``pkcs11:`` URI names, or :class:`UriError` saying what is wrong."""
    if not is_pkcs11_uri(text):
        raise UriError(f"{_shown(text)}: not a PKCS#11 URI (it must start with 'pkcs11:')")
    body = text[len(SCHEME) :]
    path, _, query = body.partition("?")
    attrs = _pairs(path, ";", _PATH_ATTRS, "path")
    options = _pairs(query, "&", _QUERY_ATTRS, "query")
    if attrs.get("type", "private") != "private":
        raise UriError(f"{_shown(text)}: type={attrs['type']}: a signing key is type=private")
    for needed in ("token", "object"):
        if not attrs.get(needed):
            raise UriError(f"{_shown(text)}: no '{needed}=' attribute (which token, which key)")
    return Pkcs11Uri(
        token=unquote(attrs["token"]),
        object=unquote(attrs["object"]),
        id=unquote_to_bytes(attrs["id"]) if "id" in attrs else None,
        serial=unquote(attrs["serial"]) if "serial" in attrs else None,
        manufacturer=unquote(attrs["manufacturer"]) if "manufacturer" in attrs else None,
        module_path=Path(unquote(options["module-path"])) if "module-path" in options else None,
        pin_source=_pin_path(unquote(options["pin-source"])) if "pin-source" in options else None,
    )


def _pairs(text: str, separator: str, allowed: frozenset[str], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in filter(None, text.split(separator)):
        name, equals, value = item.partition("=")
        if name == "pin-value":
            raise UriError(
                "pin-value in a PKCS#11 URI is refused: give the PIN with pin-source=FILE "
                "or the REDSTONE_PKCS11_PIN environment variable"
            )
        if not equals:
            raise UriError(f"PKCS#11 URI: {item!r} is not name=value")
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise UriError(f"PKCS#11 URI: unknown {where} attribute {name!r} (known: {known})")
        if name in found:
            raise UriError(f"PKCS#11 URI: {name!r} given twice")
        found[name] = value
    return found


def _pin_path(source: str) -> Path:
    if source.startswith("file:"):
        source = source[len("file:") :]
        while source.startswith("//"):  # file:///x and file://x forms
            source = source[1:]
    if not source.startswith("/"):
        raise UriError(f"pin-source {source!r}: give an absolute file path or file: URI")
    return Path(source)


def _quote(value: str) -> str:
    return "".join(
        c
        if (c.isascii() and c.isalnum()) or c in "-._~"
        else "".join(f"%{b:02X}" for b in c.encode())
        for c in value
    )


def _shown(text: str) -> str:
    """A URI as an error may show it: never a pin-value."""
    return text.split("?", 1)[0]
