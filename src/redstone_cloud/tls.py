"""uvicorn's HTTP protocol, extended for the backend's connections.

:func:`http_protocol` returns uvicorn's fastest available HTTP protocol
(httptools, else h11) with three additions per connection:

* the TLS peer certificate's DER bytes and SHA-256 land in the ASGI scope's
  ``state`` (``tls_client_cert``, ``tls_client_fingerprint``), where
  ``request.state`` exposes them (uvicorn does not put them in the scope);
* a **header timeout**: a request's complete headers must arrive within
  ``header_timeout_s`` of the connection opening or of the previous answer,
  otherwise the connection is dropped. uvicorn has only a keep-alive timeout,
  which any byte cancels, so a slow-loris client trickling a header byte every
  few seconds held a connection (and a slot) for ever;
* a **clean shutdown**: on SIGTERM uvicorn asks every connection to close and
  waits until all are gone. An idle keep-alive TLS connection then waited for
  the client's ``close_notify`` (asyncio's SSL shutdown), which an idle client
  never sends — that was the connection that held ``serve`` until
  ``--graceful-timeout``. Idle connections are now aborted at once (nothing is
  left to send on them); connections with a request in flight finish it first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

CERT_STATE_KEY = "tls_client_cert"
FINGERPRINT_STATE_KEY = "tls_client_fingerprint"

_log = logging.getLogger("redstone_cloud.tls")


def _with_peer_cert(app_state: dict[str, Any], transport: asyncio.BaseTransport) -> dict[str, Any]:
    ssl_object = transport.get_extra_info("ssl_object")
    der = (
        ssl_object.getpeercert(binary_form=True) if isinstance(ssl_object, ssl.SSLObject) else None
    )
    fingerprint = hashlib.sha256(der).hexdigest() if der else None
    return {**app_state, CERT_STATE_KEY: der, FINGERPRINT_STATE_KEY: fingerprint}


class _Guard:
    """Mixed into a uvicorn HTTP protocol (which provides the attributes used here)."""

    header_timeout_s: float = 10.0
    transport: asyncio.Transport
    app_state: dict[str, Any]
    cycle: Any
    loop: asyncio.AbstractEventLoop
    _header_timer: asyncio.TimerHandle | None = None
    _armed_cycle: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.app_state = _with_peer_cert(self.app_state, transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._between_requests():
            self._arm_header_timer()
        super().data_received(data)  # type: ignore[misc]
        if self._header_timer is not None and self.cycle is not self._armed_cycle:
            self._cancel_header_timer()  # a new request's headers are complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def shutdown(self) -> None:
        idle = self._between_requests()
        super().shutdown()  # type: ignore[misc]
        if idle and self.transport is not None:
            self.transport.abort()  # nothing in flight; do not wait for a TLS close_notify

    def _between_requests(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._armed_cycle = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_overdue)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.cycle is self._armed_cycle and not self.transport.is_closing():
            _log.debug("closing a connection whose request headers did not arrive in time")
            self.transport.abort()


class ClientCertH11Protocol(_Guard, H11Protocol):
    pass


def http_protocol(header_timeout_s: float = 10.0) -> type[asyncio.Protocol]:
    """httptools-based when installed (several times faster than h11), else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        base: type[asyncio.Protocol] = ClientCertH11Protocol
        return type("GuardedH11Protocol", (base,), {"header_timeout_s": header_timeout_s})

    class ClientCertHttpToolsProtocol(_Guard, HttpToolsProtocol):
        pass

    ClientCertHttpToolsProtocol.header_timeout_s = header_timeout_s
    return ClientCertHttpToolsProtocol
