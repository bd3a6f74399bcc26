"""DoCAN link: ISO-TP (can-isotp) over a python-can bus.

In vehicles the bus is SocketCAN (classic or FD); on hosts without kernel CAN
the same code runs over python-can's ``virtual`` or ``udp_multicast`` buses.
"""

from __future__ import annotations

from typing import Any

import can
import isotp
from udsoncan.connections import PythonIsoTpConnection

from redstone_agent.uds.config import DoCanSettings
from redstone_agent.uds.errors import TransportError


def isotp_params(settings: DoCanSettings) -> dict[str, Any]:
    """can-isotp parameters for ``settings`` (shared by tester and simulator)."""
    return {
        "stmin": settings.st_min_ms,
        "blocksize": settings.block_size,
        "tx_data_length": settings.frame_length,
        "tx_data_min_length": 8 if settings.padding else None,
        "tx_padding": settings.pad_byte if settings.padding else None,
        "max_frame_size": settings.max_message,
        "can_fd": settings.fd,
        "bitrate_switch": settings.fd,
        "blocking_send": True,  # else P2 starts while ISO-TP is still sending
        "rx_flowcontrol_timeout": 1000,
        "rx_consecutive_frame_timeout": 1000,
        "wftmax": 0,
    }


def isotp_address(settings: DoCanSettings, *, ecu_side: bool = False) -> isotp.Address:
    """Normal addressing; the ECU side swaps transmit and receive ids."""
    mode = (
        isotp.AddressingMode.Normal_29bits
        if settings.extended_id
        else isotp.AddressingMode.Normal_11bits
    )
    txid, rxid = (settings.rx_id, settings.tx_id) if ecu_side else (settings.tx_id, settings.rx_id)
    return isotp.Address(mode, txid=txid, rxid=rxid)


def open_bus(settings: DoCanSettings) -> can.BusABC:
    """Open the python-can bus named by ``settings``, or say clearly why not."""
    kwargs: dict[str, Any] = {"interface": settings.interface, "channel": settings.channel}
    if settings.interface != "udp_multicast":
        kwargs["bitrate"] = settings.bitrate
    if settings.fd:
        kwargs["fd"] = True
        if settings.interface not in ("virtual", "udp_multicast"):
            kwargs["data_bitrate"] = settings.data_bitrate
    try:
        return can.Bus(**kwargs)
    except (OSError, can.CanError, ValueError, ImportError) as exc:
        raise TransportError(
            f"cannot open CAN bus {settings.interface}:{settings.channel}: {exc}"
        ) from exc


class DoCanLink:
    """An open ISO-TP channel to one ECU, wrapped for udsoncan."""

    def __init__(self, settings: DoCanSettings) -> None:
        self.bus = open_bus(settings)
        self.stack = isotp.CanStack(
            self.bus,
            address=isotp_address(settings),
            params=isotp_params(settings),
            read_timeout=0.005,
        )
        self.connection = PythonIsoTpConnection(self.stack)
        self.connection.open()

    def close(self) -> None:
        """Stop the ISO-TP thread and release the bus."""
        try:
            self.connection.close()
        finally:
            self.bus.shutdown()
