"""A private key on a PKCS#11 token, through python-pkcs11.

:class:`TokenKey` opens the module, finds the token by label, logs in with the
PIN and finds the key; it keeps that session and opens a new one after a
failure (a token pulled and plugged back in). :func:`generate` makes a key
pair on the token that never leaves it (``CKA_SENSITIVE`` true,
``CKA_EXTRACTABLE`` false): ECDSA P-256, or Ed25519 when the caller prefers it
and the token has both ``CKM_EC_EDWARDS_KEY_PAIR_GEN`` and ``CKM_EDDSA``.
Every failure is one :class:`TokenError` line that names the token and says what to
check; the PIN never appears in one.

The PIN comes from the URI's ``pin-source`` file or the ``REDSTONE_PKCS11_PIN``
environment variable; the module from ``module-path`` or
``REDSTONE_PKCS11_MODULE``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redstone_agent.errors import RedstoneError
from redstone_agent.pkcs11.uri import Pkcs11Uri

PIN_ENV = "REDSTONE_PKCS11_PIN"
MODULE_ENV = "REDSTONE_PKCS11_MODULE"
CURVE = "secp256r1"
"""P-256: the curve every PKCS#11 token we met signs with."""
P256 = "ecdsa-p256"
ED25519 = "ed25519"
"""Key algorithms, named as ``redstone_agent.uptane.keys.Algorithm`` names them."""
ED25519_PARAMS = bytes.fromhex("06032b6570")
"""CKA_EC_PARAMS of an Ed25519 key: the DER of OID 1.3.101.112 (PKCS#11 3.0 §2.3.10)."""

_libraries: dict[Path, Any] = {}
_libraries_lock = threading.Lock()
_failed: set[Path] = set()
"""Modules that reported a failure of their own (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR):
tpm2-pkcs11 keeps answering so after its TPM went away, even once it is back, until it
is finalised and initialised again, which their next use does (``_library``)."""
_logged_in: dict[tuple[int, str, str | None], str] = {}
"""(library, token label, serial) -> the PIN this process logged in with: PKCS#11 keeps
one login per process and token, and C_Login does not check a PIN once logged in."""


@functools.cache
def _libcrypto() -> Any:
    """The process's OpenSSL libcrypto (the one Python's ``ssl`` uses), if it can be had."""
    name = ctypes.util.find_library("crypto")
    try:
        return ctypes.CDLL(name or "libcrypto.so.3")
    except OSError:
        return None


def _clear_openssl_errors() -> None:
    """Empty this thread's OpenSSL error queue after a token call.

    SoftHSM2 (and other modules built on OpenSSL) leave errors there, e.g. a
    failed engine load at ``C_Initialize``. Python's ``ssl`` reads that queue
    after its own calls, so the next TLS read on the same thread failed with a
    stale "[ENGINE: NO_SUCH_ENGINE] no such engine" (found by a test that
    signed on a token, then spoke HTTPS).
    """
    crypto = _libcrypto()
    if crypto is not None:
        crypto.ERR_clear_error()


class TokenError(RedstoneError):
    """The token, its module, the PIN or the key is not as the URI says (one line)."""


class KeyNotFound(TokenError):
    """The token is there and the PIN right, but it holds no key with that label."""


def module_of(uri: Pkcs11Uri, env: Mapping[str, str] = os.environ) -> Path:
    if uri.module_path is not None:
        return uri.module_path
    if env.get(MODULE_ENV):
        return Path(env[MODULE_ENV])
    raise TokenError(f"{uri}: no PKCS#11 module: add ?module-path=LIB.so or set {MODULE_ENV}")


def pin_of(uri: Pkcs11Uri, env: Mapping[str, str] = os.environ) -> str:
    if uri.pin_source is not None:
        try:
            lines = uri.pin_source.read_text().splitlines()
        except OSError as exc:
            raise TokenError(
                f"{uri}: cannot read the PIN from {uri.pin_source}: {exc.strerror}"
            ) from None
        return lines[0] if lines else ""
    if PIN_ENV in env:
        return env[PIN_ENV]
    raise TokenError(f"{uri}: no PIN: add ?pin-source=FILE or set {PIN_ENV}")


def _library(path: Path) -> Any:
    """The loaded module; one that failed is initialised again first (its sessions and
    logins end: other keys of the process open theirs again on their next use)."""
    import pkcs11

    with _libraries_lock:
        try:
            if path not in _libraries:
                _libraries[path] = pkcs11.lib(str(path))
            elif path in _failed:
                lib = _libraries[path]
                for login in [k for k in _logged_in if k[0] == id(lib)]:
                    del _logged_in[login]
                lib.reinitialize()
            _failed.discard(path)
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"PKCS#11 module {path} cannot start: {_failure(exc)}") from None
        finally:
            _clear_openssl_errors()
        return _libraries[path]


def _note(path: Path, exc: Exception) -> None:
    """Remember a module that failed as a whole, to start it again before its next use."""
    import pkcs11

    if isinstance(exc, (pkcs11.exceptions.GeneralError, pkcs11.exceptions.DeviceError)):
        with _libraries_lock:
            _failed.add(path)


class TokenKey:
    """One private key on a token, signing through a session kept open between uses."""

    def __init__(self, uri: Pkcs11Uri, env: Mapping[str, str] = os.environ) -> None:
        self.uri = uri
        self._module = module_of(uri, env)
        self._pin = pin_of(uri, env)
        self._lock = threading.Lock()
        self._session: Any = None
        self._key: Any = None
        self.algorithm = P256
        self.public_key_der = self._with_session(lambda _session: self._public_der())

    def sign_digest(self, digest: bytes) -> bytes:
        """ECDSA over a digest the caller computed; DER-encoded (r, s), as X.509 wants."""
        from pkcs11 import Mechanism
        from pkcs11.util.ec import encode_ecdsa_signature

        self._require(P256)
        raw = self._with_session(lambda _s: self._key.sign(digest, mechanism=Mechanism.ECDSA))
        return bytes(encode_ecdsa_signature(raw))

    def sign_message(self, message: bytes) -> bytes:
        """Ed25519 over the whole message (EdDSA hashes inside): the 64-byte signature."""
        from pkcs11 import Mechanism

        self._require(ED25519)
        return bytes(
            self._with_session(lambda _s: self._key.sign(message, mechanism=Mechanism.EDDSA))
        )

    def attribute(self, name: str) -> Any:
        """A private-key attribute by python-pkcs11 ``Attribute`` name (tests, checks)."""
        from pkcs11 import Attribute

        return self._with_session(lambda _s: self._key[Attribute[name]])

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _require(self, algorithm: str) -> None:
        if self.algorithm != algorithm:
            raise TokenError(f"{self.uri}: the key is {self.algorithm}, not {algorithm}")

    def _public_der(self) -> bytes:
        """The public key as DER SubjectPublicKeyInfo."""
        from pkcs11 import Attribute, ObjectClass
        from pkcs11.util.ec import encode_ec_public_key

        public = _find(self._session, self.uri, ObjectClass.PUBLIC_KEY)
        if self.algorithm == P256:
            return bytes(encode_ec_public_key(public))
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        point = bytes(public[Attribute.EC_POINT])
        # Tokens give CKA_EC_POINT DER-wrapped (04 20 ...), as PKCS#11 3.0 asks, or raw.
        raw = point[2:] if len(point) == 34 and point[:2] == b"\x04\x20" else point
        try:
            key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise TokenError(f"{self.uri}: the token's Ed25519 public key is malformed") from None
        return key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _with_session(self, action: Any) -> Any:
        with self._lock:
            try:
                return self._attempt(action)
            finally:
                _clear_openssl_errors()

    def _attempt(self, action: Any) -> Any:
        """``action(session)``; a token that went away gets one fresh session."""
        import pkcs11

        gone = (
            pkcs11.exceptions.DeviceRemoved,
            pkcs11.exceptions.TokenNotPresent,
            pkcs11.exceptions.SessionHandleInvalid,
            pkcs11.exceptions.SessionClosed,
            pkcs11.exceptions.DeviceError,
        )
        for attempt in (1, 2):
            try:
                if self._session is None:
                    self._open()
                return action(self._session)
            except TokenError:
                self._drop()
                raise
            except gone as exc:
                self._drop()
                _note(self._module, exc)
                if attempt == 2:
                    raise TokenError(
                        f"{self.uri}: the token is gone ({type(exc).__name__})"
                    ) from None
            except pkcs11.PKCS11Error as exc:
                self._drop()
                _note(self._module, exc)
                raise TokenError(f"{self.uri}: {_failure(exc)}") from None
        raise AssertionError("unreachable")

    def _open(self) -> None:
        import pkcs11
        from pkcs11 import ObjectClass

        session = _login(self._module, self.uri, self._pin)
        try:
            key = _find(session, self.uri, ObjectClass.PRIVATE_KEY)
        except BaseException:
            session.close()
            raise
        kinds = {pkcs11.KeyType.EC: P256, pkcs11.KeyType.EC_EDWARDS: ED25519}
        if key.key_type not in kinds:
            session.close()
            raise TokenError(f"{self.uri}: the key is {key.key_type.name}, not an EC key")
        self._session, self._key, self.algorithm = session, key, kinds[key.key_type]

    def _drop(self) -> None:
        if self._session is not None:
            session, self._session, self._key = self._session, None, None
            with contextlib.suppress(Exception):  # the token may be gone: nothing to release
                session.close()


def open_or_generate(
    uri: Pkcs11Uri, env: Mapping[str, str] = os.environ, *, prefer: str = P256
) -> TokenKey:
    """The key the URI names, made on the token first if it holds none with that label.
    Only a missing key leads to making one, so a wrong PIN is tried once, not twice."""
    try:
        return TokenKey(uri, env)
    except KeyNotFound:
        return generate(uri, env, prefer=prefer)


def generate(
    uri: Pkcs11Uri, env: Mapping[str, str] = os.environ, *, prefer: str = P256
) -> TokenKey:
    """Make a key pair labelled ``uri.object`` on the token; refuse if one exists.

    ``prefer=ED25519`` makes an Ed25519 key where the token can make and sign with
    one, and a P-256 key elsewhere (X.509 keys stay P-256: docs/keys.md §2)."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    module = module_of(uri, env)
    session = _login(module, uri, pin_of(uri, env))
    try:
        if _exists(session, uri, ObjectClass.PRIVATE_KEY):
            raise TokenError(f"{uri}: the token already holds a key with that label")
        if prefer == ED25519 and _signs_ed25519(session):
            kind, curve = KeyType.EC_EDWARDS, ED25519_PARAMS
        else:
            kind, curve = KeyType.EC, encode_named_curve_parameters(CURVE)
        params = session.create_domain_parameters(kind, {Attribute.EC_PARAMS: curve}, local=True)
        # Every pair gets a CKA_ID (the URI's, else a random one): OpenSSL's pkcs11 engine
        # (libp11 0.4.12) pairs a private key with the first public key of the same ID,
        # so keys without one were paired with another key's public half.
        key_id = uri.id if uri.id is not None else secrets.token_bytes(8)
        common: dict[Any, Any] = {
            Attribute.LABEL: uri.object,
            Attribute.TOKEN: True,
            Attribute.ID: key_id,
        }
        # python-pkcs11 adds CKA_ENCRYPT and CKA_DECRYPT false; tpm2-pkcs11 ties them to
        # CKA_SIGN and CKA_VERIFY (one TPM flag each) and refuses the pair, so they are left
        # out (DEFAULT) for the token to derive.
        params.generate_keypair(
            store=True,
            public_template={**common, Attribute.VERIFY: True, Attribute.ENCRYPT: pkcs11.DEFAULT},
            private_template={
                **common,
                Attribute.SIGN: True,
                Attribute.DECRYPT: pkcs11.DEFAULT,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.PRIVATE: True,
            },
        )
    except pkcs11.PKCS11Error as exc:
        _note(module, exc)
        raise TokenError(f"{uri}: cannot make a key: {_failure(exc)}") from None
    finally:
        session.close()
        _clear_openssl_errors()
    return TokenKey(uri, env)


def _signs_ed25519(session: Any) -> bool:
    from pkcs11 import Mechanism

    mechanisms = set(session.token.slot.get_mechanisms())
    return {Mechanism.EC_EDWARDS_KEY_PAIR_GEN, Mechanism.EDDSA} <= mechanisms


def _login(module: Path, uri: Pkcs11Uri, pin: str) -> Any:
    import pkcs11

    try:
        lib = _library(module)
    except TokenError as exc:
        raise TokenError(f"{uri}: {exc}") from None
    try:
        return _open_session(lib, uri, pin)
    except pkcs11.PKCS11Error as exc:
        _note(module, exc)
        raise TokenError(f"{uri}: cannot log in: {_failure(exc)}") from None


def _open_session(lib: Any, uri: Pkcs11Uri, pin: str) -> Any:
    import pkcs11

    match: dict[str, Any] = {"token_label": uri.token}
    if uri.serial is not None:
        match["token_serial"] = uri.serial.encode()
    try:
        token = lib.get_token(**match)
    except pkcs11.exceptions.NoSuchToken:
        raise TokenError(
            f"{uri}: no token labelled {uri.token!r} in {_name(lib)} (plugged in? initialised?)"
        ) from None
    except pkcs11.exceptions.MultipleTokensReturned:
        raise TokenError(f"{uri}: several tokens are labelled {uri.token!r}: add serial=") from None
    login = (id(lib), uri.token, uri.serial)
    try:
        session = token.open(user_pin=pin, rw=True)
        _logged_in[login] = pin
        return session
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        # Login is per process and token: another key of this process logged in already,
        # and a new session shares that login. Its PIN must still be the one that worked.
        if _logged_in.get(login, pin) != pin:
            raise TokenError(f"{uri}: the token refused the PIN (wrong PIN)") from None
        return token.open(rw=True)
    except pkcs11.exceptions.PinIncorrect:
        raise TokenError(f"{uri}: the token refused the PIN (wrong PIN)") from None
    except pkcs11.exceptions.PinLocked:
        raise TokenError(f"{uri}: the token's user PIN is locked (too many wrong PINs)") from None


def _find(session: Any, uri: Pkcs11Uri, object_class: Any) -> Any:
    import pkcs11

    query: dict[str, Any] = {"object_class": object_class, "label": uri.object}
    if uri.id is not None:
        query["id"] = uri.id
    try:
        return session.get_key(**query)
    except pkcs11.exceptions.NoSuchKey:
        kind = "private" if object_class is pkcs11.ObjectClass.PRIVATE_KEY else "public"
        raise KeyNotFound(f"{uri}: the token holds no {kind} key labelled {uri.object!r}") from None
    except pkcs11.exceptions.MultipleObjectsReturned:
        raise TokenError(f"{uri}: several keys are labelled {uri.object!r}: add id=") from None


def _exists(session: Any, uri: Pkcs11Uri, object_class: Any) -> bool:
    """Whether any key of the class carries the label (several count as existing)."""
    from pkcs11 import Attribute

    query = {Attribute.LABEL: uri.object, Attribute.CLASS: object_class}
    return any(True for _ in session.get_objects(query))


def _failure(exc: Exception) -> str:
    """python-pkcs11's error, and for CKR_GENERAL_ERROR, which names no cause, the causes
    met: tpm2-pkcs11 answers so when it cannot reach the TPM (a stopped swtpm) and when
    the TPM has no room for another key (docs/keys.md §9)."""
    import pkcs11

    text = f"{type(exc).__name__} {exc}".strip()
    if isinstance(exc, pkcs11.exceptions.GeneralError):
        text += " (the module failed: is the TPM or HSM reachable? its log on stderr says why)"
    return text


def _name(lib: Any) -> str:
    return str(getattr(lib, "so", "") or "the PKCS#11 module")
