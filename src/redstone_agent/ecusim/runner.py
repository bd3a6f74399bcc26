"""Start a simulated ECU on its configured transports, in this loop or a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from redstone_agent.ecusim.config import SimConfig
from redstone_agent.ecusim.doip_server import DoIpEntity
from redstone_agent.ecusim.ecu import SimulatedEcu
from redstone_agent.ecusim.isotp_server import serve_docan
from redstone_agent.ecusim.tester import tester_config
from redstone_agent.uds.config import EcuConfig

START_TIMEOUT = 10.0
"""Seconds :class:`BackgroundSimulator` waits for the simulator's sockets."""


class Simulator:
    """One ECU on ISO-TP and/or DoIP, inside a running asyncio loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.ecu = SimulatedEcu(config)
        self.doip: DoIpEntity | None = None
        self._stop = asyncio.Event()

    async def run(self, ready: Callable[[Simulator], None] | None = None) -> None:
        """Serve until :meth:`stop`; ``ready`` is called once every socket is bound."""
        tasks: list[asyncio.Task[None]] = []
        closers: list[Callable[[], None]] = []
        try:
            if self.config.doip is not None:
                self.doip = DoIpEntity(self.ecu, self.config.doip)
                server, transport = await self.doip.start()
                closers += [server.close, transport.close, self.doip.drop_all]
            if self.config.docan is not None:
                listening = asyncio.Event()
                serving = asyncio.create_task(
                    serve_docan(self.ecu, self.config.docan, self._stop, listening)
                )
                tasks.append(serving)
                await _first_of(serving, listening.wait())
                if serving.done():
                    serving.result()  # the bus failed to open: raise that error
            if ready is not None:
                ready(self)
            await _first_of(self._stop.wait(), *tasks)
            for task in tasks:
                if task.done():
                    task.result()  # a transport that died raises here
        finally:
            self._stop.set()
            for close in closers:
                close()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def stop(self) -> None:
        """Ask :meth:`run` to return (call from the loop's thread)."""
        self._stop.set()


async def _first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of ``awaitables`` finishes; cancel the helper tasks."""
    tasks = [a if isinstance(a, asyncio.Task) else asyncio.ensure_future(a) for a in awaitables]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task, original in zip(tasks, awaitables, strict=True):
        if task is not original:
            task.cancel()


class BackgroundSimulator:
    """A :class:`Simulator` on its own thread and loop: for tests, benchmarks, demos.

    ``with BackgroundSimulator(config) as sim:`` returns once the ECU listens;
    ``sim.doip_port`` tells the TCP port when the config asked for port 0.
    """

    def __init__(self, config: SimConfig) -> None:
        self.simulator = Simulator(config)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"ecusim-{config.name}", daemon=True
        )

    @property
    def ecu(self) -> SimulatedEcu:
        return self.simulator.ecu

    @property
    def doip_port(self) -> int:
        assert self.simulator.doip is not None
        return self.simulator.doip.tcp_port

    @property
    def udp_port(self) -> int:
        assert self.simulator.doip is not None
        return self.simulator.doip.udp_port

    def tester_config(self, **changes: Any) -> EcuConfig:
        """The flasher's configuration for this running simulator (actual ports)."""
        doip = self.simulator.doip
        ports = {"tcp_port": doip.tcp_port, "udp_port": doip.udp_port} if doip else {}
        return tester_config(self.simulator.config, **ports, **changes)

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self.simulator.run(lambda _sim: self._ready.set()))
        except BaseException as exc:  # surfaced to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    def __enter__(self) -> BackgroundSimulator:
        self._thread.start()
        ready = self._ready.wait(START_TIMEOUT)
        if self._error is not None:
            raise self._error
        if not ready:  # else the caller's first request fails with a puzzling timeout
            self.close()
            name = self.simulator.config.name
            raise TimeoutError(f"ECU simulator {name} did not listen within {START_TIMEOUT} s")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and join the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.simulator.stop)
            self._thread.join(10)
