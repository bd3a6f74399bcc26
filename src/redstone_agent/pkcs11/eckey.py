"""A token's EC key as a ``cryptography`` private key, for code that signs X.509.

``cryptography`` builds certificates and CRLs and then calls the issuer key's
``sign(data, ECDSA(hash))``; it accepts any subclass of its abstract
``EllipticCurvePrivateKey``. This one hashes on the host and has the token sign
the digest, so the CA code cannot tell a token key from a file key, and the
private value never leaves the token: exporting it raises.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.utils import Buffer

from redstone_agent.errors import RedstoneError
from redstone_agent.pkcs11.token import TokenError, TokenKey


class NotExportable(RedstoneError):
    """A token key's private value was asked for; it never leaves the token."""


class TokenEcPrivateKey(ec.EllipticCurvePrivateKey):
    def __init__(self, key: TokenKey) -> None:
        self.token_key = key
        public = serialization.load_der_public_key(key.public_key_der)
        if not isinstance(public, ec.EllipticCurvePublicKey):
            key.close()
            raise TokenError(f"{key.uri}: the key on the token is {key.algorithm}, not P-256")
        self._public = public

    @property
    def uri(self) -> str:
        return str(self.token_key.uri)

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise NotExportable(f"{self.uri}: only ECDSA signatures are made on the token")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            assert isinstance(algorithm, hashes.HashAlgorithm)
            hasher = hashes.Hash(algorithm)
            hasher.update(data)
            digest = hasher.finalize()
        return self.token_key.sign_digest(digest)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        self._refuse("ECDH")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        self._refuse("its private numbers")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        self._refuse("its private bytes")

    def __copy__(self) -> TokenEcPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenEcPrivateKey:
        return self

    def _refuse(self, what: str) -> NoReturn:
        raise NotExportable(f"{self.uri}: {what} cannot be had: the key never leaves the token")
