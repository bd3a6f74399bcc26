"""Make the TLS client certificate visible to the app (uvicorn does not put it in the scope).

:func:`http_protocol` returns uvicorn's fastest available HTTP protocol
(httptools, else h11) extended so that, per connection, the peer certificate's
DER bytes land in the ASGI scope's ``state`` (as ``tls_client_cert``), where
``request.state`` exposes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

CERT_STATE_KEY = "tls_client_cert"
FINGERPRINT_STATE_KEY = "tls_client_fingerprint"


def _with_peer_cert(app_state: dict[str, Any], transport: asyncio.BaseTransport) -> dict[str, Any]:
    ssl_object = transport.get_extra_info("ssl_object")
    der = (
        ssl_object.getpeercert(binary_form=True) if isinstance(ssl_object, ssl.SSLObject) else None
    )
    fingerprint = hashlib.sha256(der).hexdigest() if der else None
    return {**app_state, CERT_STATE_KEY: der, FINGERPRINT_STATE_KEY: fingerprint}


class ClientCertH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = _with_peer_cert(self.app_state, transport)


def http_protocol() -> type[asyncio.Protocol]:
    """httptools-based when installed (several times faster than h11), else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return ClientCertH11Protocol

    class ClientCertHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.app_state = _with_peer_cert(self.app_state, transport)

    return ClientCertHttpToolsProtocol
