"""Make the TLS client certificate visible to the app (uvicorn does not put it in the scope).

:class:`ClientCertH11Protocol` is uvicorn's h11 protocol that, per connection,
adds the peer certificate's DER bytes to the ASGI scope's ``state`` (as
``tls_client_cert``), where ``request.state`` exposes it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

CERT_STATE_KEY = "tls_client_cert"


class ClientCertH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = (
            ssl_object.getpeercert(binary_form=True)
            if isinstance(ssl_object, ssl.SSLObject)
            else None
        )
        state: dict[str, Any] = dict(self.app_state)
        state[CERT_STATE_KEY] = der
        self.app_state = state
