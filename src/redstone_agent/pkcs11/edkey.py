"""A token's Ed25519 key as a ``cryptography`` private key, for Uptane signing.

securesystemslib's ``CryptoSigner`` signs with any ``Ed25519PrivateKey`` by
calling ``sign(data)``; this subclass has the token sign (EdDSA takes the whole
message), so a role key on a token signs metadata like a file key would. The
private value never leaves the token: exporting it raises.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.utils import Buffer

from redstone_agent.pkcs11.eckey import NotExportable
from redstone_agent.pkcs11.token import ED25519, TokenError, TokenKey


class TokenEd25519PrivateKey(ed25519.Ed25519PrivateKey):
    def __init__(self, key: TokenKey) -> None:
        if key.algorithm != ED25519:
            key.close()
            raise TokenError(f"{key.uri}: the key on the token is {key.algorithm}, not Ed25519")
        self.token_key = key
        public = serialization.load_der_public_key(key.public_key_der)
        assert isinstance(public, ed25519.Ed25519PublicKey)
        self._public = public

    def sign(self, data: Buffer) -> bytes:
        return self.token_key.sign_message(bytes(data))

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        self._refuse()

    def private_bytes_raw(self) -> bytes:
        self._refuse()

    def __copy__(self) -> TokenEd25519PrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenEd25519PrivateKey:
        return self

    def _refuse(self) -> NoReturn:
        raise NotExportable(
            f"{self.token_key.uri}: its private bytes cannot be had: the key never leaves the token"
        )
