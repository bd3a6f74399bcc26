"""DoIP (ISO 13400-2) payloads as typed functions over doipclient's message classes.

doipclient has the layouts but no type hints; this module is the one place
that touches them untyped, for both the tester and the simulated entity.
"""

from __future__ import annotations

import importlib
import struct
from typing import Any

_messages: Any = importlib.import_module("doipclient.messages")
_client: Any = importlib.import_module("doipclient.client")

DOIP_VERSION = 0x02
HEADER = 8

GENERIC_NACK = 0x0000
VEHICLE_ID_REQUEST = 0x0001
VEHICLE_ID_REQUEST_EID = 0x0002
VEHICLE_ID_REQUEST_VIN = 0x0003
VEHICLE_ID_RESPONSE = 0x0004
ROUTING_REQUEST = 0x0005
ROUTING_RESPONSE = 0x0006
ALIVE_REQUEST = 0x0007
ALIVE_RESPONSE = 0x0008
DIAGNOSTIC = 0x8001
DIAG_ACK = 0x8002
DIAG_NACK = 0x8003


def pack_doip(payload_type: int, payload: bytes, version: int = DOIP_VERSION) -> bytes:
    """Generic DoIP header (version, inverse, type, length) followed by the payload."""
    return (
        bytes([version, version ^ 0xFF])
        + payload_type.to_bytes(2, "big")
        + len(payload).to_bytes(4, "big")
        + payload
    )


def generic_nack(code: int) -> bytes:
    return bytes(_messages.GenericDoIPNegativeAcknowledge(code).pack())


def routing_response(tester: int, entity: int, code: int) -> bytes:
    return bytes(_messages.RoutingActivationResponse(tester, entity, code).pack())


def routing_request_source(payload: bytes) -> int:
    """Tester logical address of a routing activation request payload."""
    return int(_messages.RoutingActivationRequest.unpack(payload, len(payload)).source_address)


def alive_response(entity: int) -> bytes:
    return bytes(_messages.AliveCheckResponse(entity).pack())


def diagnostic(source: int, target: int, data: bytes) -> bytes:
    return bytes(_messages.DiagnosticMessage(source, target, data).pack())


def diagnostic_ack(source: int, target: int) -> bytes:
    return bytes(_messages.DiagnosticMessagePositiveAcknowledgement(source, target, 0).pack())


def diagnostic_nack(source: int, target: int, code: int) -> bytes:
    return bytes(_messages.DiagnosticMessageNegativeAcknowledgement(source, target, code).pack())


def vehicle_identification(vin: str, entity: int, eid: bytes, gid: bytes) -> bytes:
    return bytes(_messages.VehicleIdentificationResponse(vin, entity, eid, gid, 0).pack())


def vehicle_identification_request() -> bytes:
    return pack_doip(VEHICLE_ID_REQUEST, bytes(_messages.VehicleIdentificationRequest().pack()))


def identified_address(datagram: bytes) -> int | None:
    """Logical address in a vehicle identification response datagram, else None.

    Any host may answer a broadcast: a datagram doipclient cannot unpack (it
    raises struct.error on a payload shorter than its type's layout) is not
    our entity, not a reason to abort discovery.
    """
    try:
        message = _client.Parser().read_message(datagram)
    except struct.error:
        return None
    if isinstance(message, _messages.VehicleIdentificationResponse):
        return int(message.logical_address)
    return None
