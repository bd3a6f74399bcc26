"""The simulated ECU as a DoIP entity: TCP data channel and UDP vehicle identification.

Message layouts come from doipclient's message classes; framing (the 8-byte
generic header) and the entity's rules (routing activation before diagnostics,
target address check, size cap) are here.
"""

from __future__ import annotations

import asyncio
import logging
import time

from doipclient.messages import (
    AliveCheckResponse,
    DiagnosticMessage,
    DiagnosticMessageNegativeAcknowledgement,
    DiagnosticMessagePositiveAcknowledgement,
    GenericDoIPNegativeAcknowledge,
    RoutingActivationRequest,
    RoutingActivationResponse,
    VehicleIdentificationResponse,
)

from redstone_agent.ecusim.config import SimDoIp
from redstone_agent.ecusim.ecu import SimulatedEcu
from redstone_agent.uds.doip import HEADER, pack_doip

log = logging.getLogger(__name__)

GENERIC_NACK, VEHICLE_ID_REQUEST, VEHICLE_ID_REQUEST_EID, VEHICLE_ID_REQUEST_VIN = (
    0x0000,
    0x0001,
    0x0002,
    0x0003,
)
VEHICLE_ID_RESPONSE, ROUTING_REQUEST, ROUTING_RESPONSE = 0x0004, 0x0005, 0x0006
ALIVE_REQUEST, ALIVE_RESPONSE = 0x0007, 0x0008
DIAGNOSTIC, DIAG_ACK, DIAG_NACK = 0x8001, 0x8002, 0x8003
NACK_PATTERN, NACK_TYPE, NACK_TOO_LARGE, NACK_LENGTH = 0x00, 0x01, 0x02, 0x04
DIAG_NACK_SOURCE, DIAG_NACK_TARGET = 0x02, 0x03
ROUTING_SUCCESS = 0x10
VERSIONS = (0x02, 0x03)
MAX_PAYLOAD = 0x40000


def parse_header(header: bytes) -> tuple[int, int, int] | int:
    """``(version, type, length)`` of a generic header, or the NACK code it deserves."""
    version, inverse = header[0], header[1]
    if version ^ 0xFF != inverse or version not in VERSIONS:
        return NACK_PATTERN
    length = int.from_bytes(header[4:8], "big")
    if length > MAX_PAYLOAD:
        return NACK_TOO_LARGE
    return version, int.from_bytes(header[2:4], "big"), length


def identification(ecu: SimulatedEcu, settings: SimDoIp) -> bytes:
    """Vehicle identification response / announcement payload."""
    return VehicleIdentificationResponse(
        settings.vin,
        settings.logical_address,
        bytes.fromhex(settings.eid),
        bytes.fromhex(settings.gid),
        0,
    ).pack()  # type: ignore[no-any-return]


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

    def drop_all(self) -> None:
        """Close every tester connection (reset, power loss)."""
        for writer in list(self.writers):
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.ecu.silent_until:
            writer.close()
            return
        self.writers.add(writer)
        tester: int | None = None
        try:
            while True:
                header = await reader.readexactly(HEADER)
                parsed = parse_header(header)
                if isinstance(parsed, int):  # garbage or an oversized message: hang up
                    await self._send(
                        writer, GENERIC_NACK, GenericDoIPNegativeAcknowledge(parsed).pack()
                    )
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
        la = self.settings.logical_address
        if payload_type == ROUTING_REQUEST:
            if len(payload) not in (7, 11):
                await self._send(
                    writer, GENERIC_NACK, GenericDoIPNegativeAcknowledge(NACK_LENGTH).pack()
                )
                return tester
            request = RoutingActivationRequest.unpack(payload, len(payload))
            source = request.source_address
            await self._send(
                writer,
                ROUTING_RESPONSE,
                RoutingActivationResponse(source, la, ROUTING_SUCCESS).pack(),
            )
            return int(source)
        if payload_type == ALIVE_REQUEST:
            await self._send(writer, ALIVE_RESPONSE, AliveCheckResponse(la).pack())
            return tester
        if payload_type == DIAGNOSTIC:
            await self._diagnostic(writer, payload, tester)
            return tester
        await self._send(writer, GENERIC_NACK, GenericDoIPNegativeAcknowledge(NACK_TYPE).pack())
        return tester

    async def _diagnostic(
        self, writer: asyncio.StreamWriter, payload: bytes, tester: int | None
    ) -> None:
        la = self.settings.logical_address
        if len(payload) < 5:
            await self._send(
                writer, GENERIC_NACK, GenericDoIPNegativeAcknowledge(NACK_LENGTH).pack()
            )
            return
        source, target = int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big")
        if tester is None or source != tester:
            nack = DiagnosticMessageNegativeAcknowledgement(la, source, DIAG_NACK_SOURCE)
            await self._send(writer, DIAG_NACK, nack.pack())
            return
        if target != la:
            nack = DiagnosticMessageNegativeAcknowledgement(la, source, DIAG_NACK_TARGET)
            await self._send(writer, DIAG_NACK, nack.pack())
            return
        await self._send(
            writer, DIAG_ACK, DiagnosticMessagePositiveAcknowledgement(la, source, 0).pack()
        )
        reply = self.ecu.handle(
            payload[4:], time.monotonic(), max_block_length=self.settings.max_block_length
        )
        for delay, response in reply.responses:
            if delay:
                await asyncio.sleep(delay)
            await self._send(writer, DIAGNOSTIC, DiagnosticMessage(la, source, response).pack())
        if reply.reset:
            self.ecu.reset(time.monotonic())
        if reply.reset or reply.power_loss:
            self.drop_all()

    async def _send(self, writer: asyncio.StreamWriter, payload_type: int, payload: bytes) -> None:
        writer.write(pack_doip(payload_type, payload))
        await writer.drain()


class _Discovery(asyncio.DatagramProtocol):
    """Answers vehicle identification requests (plain, by EID, by VIN)."""

    def __init__(self, entity: DoIpEntity) -> None:
        self.entity = entity
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < HEADER or self.transport is None:
            return
        if time.monotonic() < self.entity.ecu.silent_until:
            return
        parsed = parse_header(data[:HEADER])
        if isinstance(parsed, int):
            return
        _version, payload_type, _length = parsed
        settings = self.entity.settings
        body = data[HEADER:]
        wanted = (
            payload_type == VEHICLE_ID_REQUEST
            or (payload_type == VEHICLE_ID_REQUEST_EID and body == bytes.fromhex(settings.eid))
            or (payload_type == VEHICLE_ID_REQUEST_VIN and body == settings.vin.encode("ascii"))
        )
        if wanted:
            self.transport.sendto(
                pack_doip(VEHICLE_ID_RESPONSE, identification(self.entity.ecu, settings)), addr
            )
