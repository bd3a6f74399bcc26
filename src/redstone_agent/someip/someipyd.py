"""The node's SOME/IP daemon: someipy 2.1.2's ``someipyd`` with Redstone's fixes.

Run ``python -m redstone_agent.someip.someipyd --config someipyd.json`` (same
arguments and JSON config as someipy's ``someipyd``) on *every* node, Master
and Subs alike. someipy's daemon code runs unchanged except for three classes
this module swaps in before its ``main()`` builds anything (docs/someip.md §10):

1. **UDP endpoint** (``UDPSomeipEndpoint``). someipy keeps one stream parser
   per UDP socket, shared by all senders, and carries leftover bytes into the
   next datagram: one stray byte, a length field that lies or two messages
   batched in one datagram (which SOME/IP allows) desynchronise it for good,
   and the service answers nothing while the process lives on. Ours frames
   each datagram on its own (:func:`framing.split_datagram`): every message
   of a well-framed datagram is delivered, a badly framed one is dropped
   whole, and nothing carries over.
2. **Request dispatch** (``SomeipDaemon``). someipy forwards a request only
   if its method is known and drops the rest without a word; it never checks
   the protocol or interface version; it raises on an unknown message type;
   and it drops ERROR answers (0x81), so a caller waits out its timeout
   instead of hearing the refusal. Ours answers a refused request with an
   ERROR message (E_WRONG_PROTOCOL_VERSION, E_UNKNOWN_SERVICE,
   E_WRONG_INTERFACE_VERSION, E_UNKNOWN_METHOD) and hands ERROR answers to
   the waiting caller like responses.
3. **Local clients** (``DaemonServer``). A client process that dies while the
   daemon still has data queued for it (a Sub power-cut while events flow)
   makes the daemon's next read raise ``ConnectionResetError`` instead of
   returning end-of-file; someipy then never runs its disconnect handler, so
   the dead process's offers stay registered and catch every request meant for
   the restarted one, which never answers. Ours treats any end of a client's
   stream as its disconnection.

All three reach into someipy's private modules; they are pinned to 2.1.2's
layout (``someipy>=2.1`` in pyproject; re-check on every someipy upgrade).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any

from redstone_agent.someip.binding import (
    MESSAGE_ERROR,
    MESSAGE_NOTIFICATION,
    MESSAGE_REQUEST,
    MESSAGE_REQUEST_NO_RETURN,
    MESSAGE_RESPONSE,
    PROTOCOL_VERSION,
    RETURN_UNKNOWN_METHOD,
    RETURN_UNKNOWN_SERVICE,
    RETURN_WRONG_INTERFACE_VERSION,
    RETURN_WRONG_PROTOCOL_VERSION,
    return_code_name,
)
from redstone_agent.someip.errors import MalformedDatagram
from redstone_agent.someip.framing import Header, Message, error_answer, split_datagram
from redstone_agent.someip.someipy_hotpath import daemon_transmit
from redstone_agent.someip.someipy_hotpath import install as install_hotpath

log = logging.getLogger("someipyd.redstone")
"""A child of someipyd's own logger, so our lines land in its log file/stdout."""

_ANSWERED_TYPES = frozenset({MESSAGE_RESPONSE, MESSAGE_ERROR})
_KNOWN_TYPES = _ANSWERED_TYPES | {MESSAGE_REQUEST, MESSAGE_REQUEST_NO_RETURN, MESSAGE_NOTIFICATION}


class _Throttled:
    """Log at most once per second, with a count of what was left out: a flood of
    hostile datagrams must not become a flood of log lines."""

    def __init__(self, level: int, period: float = 1.0) -> None:
        self._level = level
        self._period = period
        self._last = -period
        self._suppressed = 0

    def log(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self._period:
            self._suppressed += 1
            return
        more = f" (and {self._suppressed} more since the last line)" if self._suppressed else ""
        log.log(self._level, message + more, *args)
        self._last = now
        self._suppressed = 0


_dropped = _Throttled(logging.WARNING)
_refused = _Throttled(logging.INFO)


def _to_someipy(message: Message) -> Any:
    from someipy._internal.someip_header import SomeIpHeader
    from someipy._internal.someip_message import SomeIpMessage

    h = message.header
    header = SomeIpHeader(
        service_id=h.service_id,
        method_id=h.method_id,
        length=8 + len(message.payload),
        client_id=h.client_id,
        session_id=h.session_id,
        protocol_version=h.protocol_version,
        interface_version=h.interface_version,
        message_type=h.message_type,
        return_code=h.return_code,
    )
    return SomeIpMessage(header=header, payload=message.payload)


def _from_someipy(header: Any) -> Header:
    return Header(
        service_id=header.service_id,
        method_id=header.method_id,
        client_id=header.client_id,
        session_id=header.session_id,
        protocol_version=header.protocol_version,
        interface_version=header.interface_version,
        message_type=header.message_type,
        return_code=header.return_code,
    )


@functools.cache
def _datagram_endpoint_class() -> type:
    """someipy's UDP endpoint, framing each datagram on its own (patch 1)."""
    from someipy._internal.someip_endpoint import UDPSomeipEndpoint

    class DatagramEndpoint(UDPSomeipEndpoint):  # type: ignore[misc]
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            try:
                messages = split_datagram(data)
            except MalformedDatagram as exc:
                _dropped.log("dropped a datagram from %s:%s: %s", addr[0], addr[1], exc)
                return
            if self._callback is None:
                return
            for message in messages:
                try:
                    self._callback(
                        _to_someipy(message), addr, (self._ip, self._port), self._protocol
                    )
                except Exception:  # one message must not cost the others of its datagram
                    log.exception("handling a message from %s:%s failed", addr[0], addr[1])

    return DatagramEndpoint


@functools.cache
def _daemon_class() -> type:
    """someipy's daemon, checking requests before dispatch and routing ERRORs (patch 2);
    its per-client transmit loop without a ``wait_for`` per message (§10.1)."""
    import someipy.someipyd as stock

    class Daemon(stock.SomeipDaemon):  # type: ignore[misc]
        async def tx_task(self, client: Any) -> None:
            await daemon_transmit(self, client)

        def _someip_message_callback(
            self, message: Any, src_addr: tuple[str, int], dst_addr: tuple[str, int], protocol: Any
        ) -> None:
            header = message.header
            kind = header.message_type
            if header.protocol_version != PROTOCOL_VERSION:
                if kind == MESSAGE_REQUEST:
                    wrong = RETURN_WRONG_PROTOCOL_VERSION
                    self._refuse(header, src_addr, dst_addr, protocol, wrong)
                else:
                    _dropped.log(
                        "dropped a message of protocol version %d from %s:%s",
                        header.protocol_version,
                        *src_addr,
                    )
                return
            if kind not in _KNOWN_TYPES:
                _dropped.log("dropped message type 0x%02x from %s:%s", kind, *src_addr)
                return
            if kind == MESSAGE_REQUEST:
                refusal = self._check_request(header, dst_addr)
                if refusal is not None:
                    self._refuse(header, src_addr, dst_addr, protocol, refusal)
                    return
            elif kind == MESSAGE_ERROR:
                # someipy routes only RESPONSE to the waiting caller; an ERROR is the
                # answer too, and its return code travels along unchanged.
                message = dataclasses.replace(
                    message, header=dataclasses.replace(header, message_type=MESSAGE_RESPONSE)
                )
            super()._someip_message_callback(message, src_addr, dst_addr, protocol)

        def _check_request(self, header: Any, dst_addr: tuple[str, int]) -> int | None:
            """The return code refusing a request, or None to dispatch it.

            Requests to an endpoint that offers nothing (a client's port) are
            not ours to answer and go on to someipy, which ignores them.
            """
            here = [
                s
                for s in self._services_to_offer.get_all_services()
                if str(s.endpoint.ip) == dst_addr[0] and s.endpoint.port == dst_addr[1]
            ]
            if not here:
                return None
            same_service = [s for s in here if s.service_id == header.service_id]
            if not same_service:
                return RETURN_UNKNOWN_SERVICE
            versioned = [s for s in same_service if s.major_version == header.interface_version]
            if not versioned:
                return RETURN_WRONG_INTERFACE_VERSION
            if not any(m.id == header.method_id for s in versioned for m in s.methods):
                return RETURN_UNKNOWN_METHOD
            return None

        def _refuse(
            self,
            header: Any,
            src_addr: tuple[str, int],
            dst_addr: tuple[str, int],
            protocol: Any,
            return_code: int,
        ) -> None:
            request = _from_someipy(header)
            _refused.log(
                "refused request 0x%04x.0x%04x from %s:%s: %s",
                request.service_id,
                request.method_id,
                src_addr[0],
                src_addr[1],
                return_code_name(return_code),
            )
            endpoint = self._someip_server_endpoints.get_endpoint_by_ip_port(
                dst_addr[0], dst_addr[1], protocol
            )
            if endpoint is not None:
                endpoint.sendto(error_answer(request, return_code).encode(), src_addr)

        def datagram_received_mcast(self, data: bytes, addr: tuple[str, int]) -> None:
            try:
                super().datagram_received_mcast(data, addr)
            except Exception as exc:  # someipy's SD parser raises on malformed input
                _dropped.log("dropped an SD datagram from %s:%s: %r", addr[0], addr[1], exc)

        def datagram_received_ucast(self, data: bytes, addr: tuple[str, int]) -> None:
            try:
                super().datagram_received_ucast(data, addr)
            except Exception as exc:
                _dropped.log("dropped an SD datagram from %s:%s: %r", addr[0], addr[1], exc)

    return Daemon


@functools.cache
def _server_class() -> type:
    """someipy's local socket server, but every end of a client is a disconnection (patch 3)."""
    from someipy._internal._daemon import daemon_server as stock

    class Server(stock.DaemonServer):  # type: ignore[misc]
        async def _handle_client(self, reader: Any, writer: Any) -> None:
            client_id = id(writer)
            self._logger.info(f"New client connected: {client_id}")
            client = stock.DaemonServerClient(reader, writer, client_id, self._logger)
            await self.client_connected.invoke(self, stock.ClientConnectedEventArgs(client))
            try:
                while await client.read_next_message() is not None:
                    pass
            except Exception as exc:  # ECONNRESET from a killed client, or garbage
                log.warning("client %s went away: %r; removing what it offered", client_id, exc)
            finally:
                await self.client_disconnected.invoke(self, stock.ClientConnectedEventArgs(client))

    return Server


def install() -> None:
    """Swap the three classes into someipy's modules; idempotent.

    someipyd's ``async_main`` looks ``SomeipDaemon`` and ``DaemonServer`` up in
    its module when it runs, and the endpoint factory looks ``UDPSomeipEndpoint``
    up in its own module each time it opens an endpoint: rebinding those names
    is enough.
    """
    import someipy.someipyd as stock
    from someipy._internal import someip_endpoint_factory

    someip_endpoint_factory.UDPSomeipEndpoint = _datagram_endpoint_class()
    stock.SomeipDaemon = _daemon_class()
    stock.DaemonServer = _server_class()
    install_hotpath()


def main() -> None:
    import someipy.someipyd as stock

    install()
    stock.main()


if __name__ == "__main__":
    main()
