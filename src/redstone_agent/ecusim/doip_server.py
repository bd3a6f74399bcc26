"""The simulated ECU as a DoIP entity: TCP data channel and UDP vehicle identification.

Payload layouts come from :mod:`redstone_agent.uds.doip_wire`; framing (the
8-byte generic header) and the entity's rules (routing activation before
diagnostics, source and target address checks, size cap) are here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from redstone_agent.ecusim.config import SimDoIp
from redstone_agent.ecusim.ecu import SimulatedEcu
from redstone_agent.uds import doip_wire as wire

log = logging.getLogger(__name__)

NACK_PATTERN, NACK_TYPE, NACK_TOO_LARGE, NACK_LENGTH = 0x00, 0x01, 0x02, 0x04
DIAG_NACK_SOURCE, DIAG_NACK_TARGET = 0x02, 0x03
ROUTING_SUCCESS = 0x10
VERSIONS = (0x02, 0x03)
MAX_PAYLOAD = 0x40000
"""Largest message accepted (a 256 KiB TransferData plus headers); more is an attack."""


def parse_header(header: bytes) -> tuple[int, int, int] | int:
    """``(version, type, length)`` of a generic header, or the NACK code it deserves."""
    version, inverse = header[0], header[1]
    if version ^ 0xFF != inverse or version not in VERSIONS:
        return NACK_PATTERN
    length = int.from_bytes(header[4:8], "big")
    if length > MAX_PAYLOAD:
        return NACK_TOO_LARGE
    return version, int.from_bytes(header[2:4], "big"), length


class DoIpEntity:
    """Serves one simulated ECU on TCP (diagnostics) and UDP (identification)."""

    def __init__(self, ecu: SimulatedEcu, settings: SimDoIp) -> None:
        self.ecu = ecu
        self.settings = settings
        self.writers: set[asyncio.StreamWriter] = set()
        self.tcp_port = settings.tcp_port
        self.udp_port = settings.udp_port

    async def start(self) -> tuple[asyncio.Server, asyncio.DatagramTransport]:
        """Bind both sockets; ports 0 become the ones the OS picked."""
        server = await asyncio.start_server(
            self._connection, self.settings.host, self.settings.tcp_port
        )
        self.tcp_port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Discovery(self),
            local_addr=(self.settings.host, self.settings.udp_port),
            allow_broadcast=True,
        )
        self.udp_port = transport.get_extra_info("sockname")[1]
        log.info(
            "%s: DoIP on %s tcp %d udp %d",
            self.ecu.config.name,
            self.settings.host,
            self.tcp_port,
            self.udp_port,
        )
        return server, transport

    def identification(self) -> bytes:
        """Vehicle identification response payload."""
        s = self.settings
        return wire.vehicle_identification(
            s.vin, s.logical_address, bytes.fromhex(s.eid), bytes.fromhex(s.gid)
        )

    def drop_all(self) -> None:
        """Close every tester connection (reset, power loss)."""
        for writer in list(self.writers):
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.ecu.silent_until:
            writer.close()  # powered off or rebooting
            return
        self.writers.add(writer)
        tester: int | None = None
        try:
            while True:
                parsed = parse_header(await reader.readexactly(wire.HEADER))
                if isinstance(parsed, int):  # garbage or an oversized message: hang up
                    await self._send(writer, wire.GENERIC_NACK, wire.generic_nack(parsed))
                    break
                _version, payload_type, length = parsed
                payload = await reader.readexactly(length)
                tester = await self._message(writer, payload_type, payload, tester)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _message(
        self, writer: asyncio.StreamWriter, payload_type: int, payload: bytes, tester: int | None
    ) -> int | None:
        """Handle one message; returns the tester address routed on this socket."""
        entity = self.settings.logical_address
        if payload_type == wire.ROUTING_REQUEST:
            if len(payload) not in (7, 11):
                await self._send(writer, wire.GENERIC_NACK, wire.generic_nack(NACK_LENGTH))
                return tester
            source = wire.routing_request_source(payload)
            response = wire.routing_response(source, entity, ROUTING_SUCCESS)
            await self._send(writer, wire.ROUTING_RESPONSE, response)
            return source
        if payload_type == wire.ALIVE_REQUEST:
            await self._send(writer, wire.ALIVE_RESPONSE, wire.alive_response(entity))
        elif payload_type == wire.DIAGNOSTIC:
            await self._diagnostic(writer, payload, tester)
        else:
            await self._send(writer, wire.GENERIC_NACK, wire.generic_nack(NACK_TYPE))
        return tester

    async def _diagnostic(
        self, writer: asyncio.StreamWriter, payload: bytes, tester: int | None
    ) -> None:
        entity = self.settings.logical_address
        if len(payload) < 5:
            await self._send(writer, wire.GENERIC_NACK, wire.generic_nack(NACK_LENGTH))
            return
        source, target = int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big")
        refusal = (
            DIAG_NACK_SOURCE if source != tester else DIAG_NACK_TARGET if target != entity else 0
        )
        if refusal:
            await self._send(writer, wire.DIAG_NACK, wire.diagnostic_nack(entity, source, refusal))
            return
        await self._send(writer, wire.DIAG_ACK, wire.diagnostic_ack(entity, source))
        reply = self.ecu.handle(
            payload[4:], time.monotonic(), max_block_length=self.settings.max_block_length
        )
        for delay, response in reply.responses:
            if delay:
                await asyncio.sleep(delay)
            await self._send(writer, wire.DIAGNOSTIC, wire.diagnostic(entity, source, response))
        if reply.reset:
            self.ecu.reset(time.monotonic())
        if reply.reset or reply.power_loss:
            self.drop_all()

    async def _send(self, writer: asyncio.StreamWriter, payload_type: int, payload: bytes) -> None:
        writer.write(wire.pack_doip(payload_type, payload))
        await writer.drain()


class _Discovery(asyncio.DatagramProtocol):
    """Answers vehicle identification requests (plain, by EID, by VIN)."""

    def __init__(self, entity: DoIpEntity) -> None:
        self.entity = entity
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < wire.HEADER or self.transport is None:
            return
        if time.monotonic() < self.entity.ecu.silent_until:
            return
        parsed = parse_header(data[: wire.HEADER])
        if isinstance(parsed, int):
            return
        payload_type, body, settings = parsed[1], data[wire.HEADER :], self.entity.settings
        wanted = (
            payload_type == wire.VEHICLE_ID_REQUEST
            or (payload_type == wire.VEHICLE_ID_REQUEST_EID and body == bytes.fromhex(settings.eid))
            or (payload_type == wire.VEHICLE_ID_REQUEST_VIN and body == settings.vin.encode())
        )
        if wanted:
            response = wire.pack_doip(wire.VEHICLE_ID_RESPONSE, self.entity.identification())
            self.transport.sendto(response, addr)
