"""The simulated ECU on ISO-TP: can-isotp's threaded stack, driven from asyncio."""

from __future__ import annotations

import asyncio
import logging
import time

import isotp

from redstone_agent.ecusim.config import SimDoCan
from redstone_agent.ecusim.ecu import SimulatedEcu
from redstone_agent.uds.docan import isotp_address, isotp_params, open_bus

log = logging.getLogger(__name__)
POLL = 0.05


async def serve_docan(
    ecu: SimulatedEcu, settings: SimDoCan, stop: asyncio.Event, ready: asyncio.Event
) -> None:
    """Answer UDS requests arriving on ``settings``' CAN ids until ``stop`` is set.

    ``ready`` is set once the bus is open and the ISO-TP stack listens.
    """
    bus = open_bus(settings)
    stack = isotp.CanStack(
        bus,
        address=isotp_address(settings, ecu_side=True),
        params=isotp_params(settings),
        read_timeout=0.005,
    )
    stack.start()
    ready.set()
    log.info(
        "%s: ISO-TP on %s:%s rx 0x%X tx 0x%X",
        ecu.config.name,
        settings.interface,
        settings.channel,
        settings.tx_id,
        settings.rx_id,
    )
    try:
        while not stop.is_set():
            request = await asyncio.to_thread(stack.recv, True, POLL)
            if request is None:
                continue
            reply = ecu.handle(
                bytes(request), time.monotonic(), max_block_length=settings.max_block_length
            )
            for delay, payload in reply.responses:
                if delay:
                    await asyncio.sleep(delay)
                await asyncio.to_thread(stack.send, payload)
            if reply.reset:
                ecu.reset(time.monotonic())
            if reply.power_loss:
                stack.stop()  # a powered-off ECU hears nothing, not even half a message
                await asyncio.sleep(reply.power_loss)
                stack.reset()
                stack.start()
    finally:
        stack.stop()
        bus.shutdown()
