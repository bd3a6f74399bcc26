"""SOME/IP method dispatch: decode, call the engine, encode — never raise.

Whatever arrives (unknown method, truncated or hostile payload, a command in
the wrong state) ends as a response with a result code; the daemon keeps
running and its state is untouched unless the command was valid.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from redstone_agent.someip.binding import RETURN_MALFORMED, RETURN_UNKNOWN_METHOD, Reply
from redstone_agent.someip.errors import MalformedPayload
from redstone_agent.someip.interface import INTERFACE_MINOR, MethodId, ResultCode
from redstone_agent.someip.messages import (
    Blob,
    InstallRequest,
    ManifestRequest,
    MetadataLocation,
    ProxiedSerial,
    ProxiedStatusRequest,
    ProxyInstallRequest,
    ProxyManifestRequest,
    Response,
)
from redstone_agent.sub.engine import Engine
from redstone_agent.sub.errors import SubError, wire_text
from redstone_agent.sub.proxied import Proxy

log = logging.getLogger(__name__)


class SubService:
    """The method handler a :class:`ServerBinding` calls."""

    def __init__(self, engine: Engine, proxy: Proxy | None = None) -> None:
        self._engine = engine
        self._proxy = proxy or Proxy(engine.ecu_serial, {})
        self._routes: dict[int, Callable[[bytes], Awaitable[bytes]]] = {
            MethodId.GET_INFO: self._get_info,
            MethodId.GET_STATUS: self._get_status,
            MethodId.GET_MANIFEST: self._get_manifest,
            MethodId.PUT_METADATA: self._put_metadata,
            MethodId.PUT_METADATA_FROM: self._put_metadata_from,
            MethodId.INSTALL: self._install,
            MethodId.ACTIVATE: self._no_args(engine.activate),
            MethodId.COMMIT: self._no_args(engine.commit),
            MethodId.ROLLBACK: self._no_args(engine.rollback),
            MethodId.CANCEL: self._no_args(engine.cancel),
            MethodId.GET_PROXIED_STATUS: self._get_proxied_status,
            MethodId.PROXY_MANIFEST: self._proxy_manifest,
            MethodId.PROXY_INSTALL: self._proxy_install,
            MethodId.PROXY_ROLLBACK: self._proxy_rollback,
        }

    async def handle(self, method_id: int, payload: bytes) -> Reply:
        route = self._routes.get(method_id)
        if route is None:
            detail = f"unknown method 0x{method_id:04x}"
            return Reply(
                Response(ResultCode.UNKNOWN_METHOD, detail).encode(), RETURN_UNKNOWN_METHOD
            )
        try:
            body = await route(payload)
        except MalformedPayload as exc:
            log.warning("method 0x%04x: malformed request: %s", method_id, exc)
            return Reply(
                Response(ResultCode.MALFORMED, wire_text(str(exc))).encode(), RETURN_MALFORMED
            )
        except SubError as exc:
            log.info("method 0x%04x refused: %s", method_id, exc)
            return Reply(Response(exc.code, wire_text(str(exc))).encode())
        except Exception as exc:  # never let one request take the daemon down
            log.exception("method 0x%04x failed", method_id)
            return Reply(Response(ResultCode.INTERNAL, wire_text(str(exc), 500)).encode())
        return Reply(Response(ResultCode.OK, body=body).encode())

    @staticmethod
    def _no_args(action: Callable[[], Awaitable[None]]) -> Callable[[bytes], Awaitable[bytes]]:
        async def call(payload: bytes) -> bytes:
            if payload:
                raise MalformedPayload(f"expected an empty request, got {len(payload)} bytes")
            await action()
            return b""

        return call

    async def _get_info(self, _payload: bytes) -> bytes:
        info = self._engine.info()
        proxied = self._proxy.serials
        return dataclasses.replace(info, interface_minor=INTERFACE_MINOR, proxied=proxied).encode()

    async def _get_status(self, _payload: bytes) -> bytes:
        return self._engine.status().encode()

    async def _get_manifest(self, payload: bytes) -> bytes:
        request = ManifestRequest.decode(payload)
        return Blob(self._engine.manifest(request.nonce_text())).encode()

    async def _put_metadata(self, payload: bytes) -> bytes:
        await self._engine.put_metadata(Blob.decode(payload).data)
        return b""

    async def _put_metadata_from(self, payload: bytes) -> bytes:
        location = MetadataLocation.decode(payload)
        await self._engine.put_metadata_from(location.url, location.sha256, location.length)
        return b""

    async def _install(self, payload: bytes) -> bytes:
        await self._engine.install(InstallRequest.decode(payload))
        return b""

    # -- 1.1: UDS ECUs behind this Sub (sub/proxied.py) ------------------------------

    async def _get_proxied_status(self, payload: bytes) -> bytes:
        request = ProxiedStatusRequest.decode(payload)
        ecu = self._proxy.ecu(request.serial)
        status = await ecu.refreshed_status() if request.refresh else ecu.status()
        return status.encode()

    async def _proxy_manifest(self, payload: bytes) -> bytes:
        request = ProxyManifestRequest.decode(payload)
        manifest = await self._proxy.ecu(request.serial).manifest(request.nonce_text())
        return Blob(manifest).encode()

    async def _proxy_install(self, payload: bytes) -> bytes:
        request = ProxyInstallRequest.decode(payload)
        await self._proxy.ecu(request.serial).install(request)
        return b""

    async def _proxy_rollback(self, payload: bytes) -> bytes:
        await self._proxy.ecu(ProxiedSerial.decode(payload).serial).rollback()
        return b""
