"""``redstone-sub run``: wire the engine to someipyd, systemd and D-Bus, then serve.

Start order matters for power-loss safety: the engine recovers from its
journal first (it may resume an install, run the post-boot health check or
report a fallback), then the service is offered, then systemd hears READY.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from redstone_agent.config import load
from redstone_agent.errors import RedstoneError
from redstone_agent.journal import Journal
from redstone_agent.service.logfmt import use_log_format
from redstone_agent.service.sdnotify import Notifier
from redstone_agent.slots import SlotsConfig
from redstone_agent.someip.binding import ServerBinding, Stack
from redstone_agent.someip.interface import STATUS_HEARTBEAT_S, EventId
from redstone_agent.someip.messages import Progress, ProxiedStatus, Status
from redstone_agent.sub.config import SubConfig
from redstone_agent.sub.engine import Engine, Hooks
from redstone_agent.sub.health import BOOT_COMPLETE, check_health
from redstone_agent.sub.proxied import REBOOT_WAIT_S, Proxy
from redstone_agent.sub.service import SubService
from redstone_agent.sub.slots_adapter import ManagedSlots
from redstone_agent.sub.slots_port import Slots
from redstone_agent.sub.trust import ManifestSigner, SubTrust

log = logging.getLogger("redstone.sub")


def _describe(status: Status) -> str:
    text = f"{status.state.name}"
    if status.target:
        text += f" {status.target}"
    if status.detail:
        text += f": {status.detail}"
    return text


class SubDaemon:
    """One running Sub: engine + SOME/IP server + optional D-Bus + systemd notify."""

    def __init__(
        self, config: SubConfig, slots: Slots, stack: Stack, *, source: str = "sub.toml"
    ) -> None:
        self.config = config
        self._stack = stack
        self._notifier = Notifier()
        self._server: ServerBinding | None = None
        self._dbus: Any = None
        self._dbus_iface: Any = None
        config.state_dir.mkdir(parents=True, exist_ok=True)
        key = config.trust.ecu_key
        if key is not None and not key.is_file():
            raise RedstoneError(f"trust.ecu-key {key}: no such file")
        hooks = Hooks(
            publish=self._publish,
            progress=self._progress,
            reboot=self._reboot,
            health=lambda: check_health(config.health),
            sign_manifest=ManifestSigner(key) if key else None,
            auto_commit=config.health.auto_commit,
        )
        self.engine = Engine(
            ecu_serial=config.ecu_serial,
            hardware_id=config.hardware_id,
            slots=slots,
            trust=SubTrust(config.trust, config.ecu_serial, config.hardware_id, config.state_dir),
            journal=Journal(config.state_dir / "sub.json"),
            hooks=hooks,
        )
        self.proxy = Proxy.build(config, self._publish_proxied, source=source)

    def _publish(self, status: Status) -> None:
        if self._server is not None:
            self._server.send_event(EventId.STATUS, status.encode())
        if self._dbus_iface is not None:
            self._dbus_iface.status_changed(_status_json(status))
        self._notifier.status(_describe(status))

    def _progress(self, progress: Progress) -> None:
        if self._server is not None:
            self._server.send_event(EventId.PROGRESS, progress.encode())

    def _publish_proxied(self, status: ProxiedStatus) -> None:
        if self._server is not None:
            self._server.send_event(EventId.PROXIED_STATUS, status.encode())

    async def _reboot(self) -> None:
        if not self.proxy.idle():
            # Never pull our own power while we flash an ECU behind us (docs/someip.md §11).
            log.warning(
                "postponing the reboot until %s finish(es)", ", ".join(self.proxy.working())
            )
            if not await self.proxy.wait_idle(REBOOT_WAIT_S):
                log.error("proxied operation still running after %.0f s; rebooting", REBOOT_WAIT_S)
        argv = self.config.reboot_command
        log.warning("rebooting: %s", " ".join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(*argv)
            await proc.wait()
        except OSError as exc:
            log.error("reboot command failed: %s", exc)

    async def start(self) -> None:
        some = self.config.someip
        await self._stack.connect()
        self._server = self._stack.server(some.instance_id, some.address, some.port)
        if BOOT_COMPLETE in self.config.health.units:
            # The health check waits for the boot to complete, and the boot (multi-user
            # .target, redstone-health.service) for this unit to start: READY first.
            # Nothing is offered before recovery ends, so no command races it.
            self._notifier.ready("recovering (health check waits for boot-complete.target)")
        await self.engine.recover()
        await self.proxy.recover()
        await self._server.offer(SubService(self.engine, self.proxy).handle)
        if self.config.dbus != "none":
            from redstone_agent.sub.dbus_api import export

            self._dbus, self._dbus_iface = await export(self.engine, self.config.dbus)
        status = self.engine.status()
        self._publish(status)
        self._notifier.ready(_describe(status))
        log.info(
            "offering instance %d on %s:%d; %s",
            some.instance_id,
            some.address,
            some.port,
            _describe(status),
        )

    async def heartbeat(self) -> None:
        """Repeat STATUS so a Master that just subscribed learns the state without asking."""
        while True:
            await asyncio.sleep(STATUS_HEARTBEAT_S)
            if self._server is not None:
                self._server.send_event(EventId.STATUS, self.engine.status().encode())

    async def watchdog(self) -> None:
        await self._notifier.keep_alive()

    async def stack_lost(self) -> None:
        await self._stack.wait_lost()

    async def stop(self) -> None:
        self._notifier.stopping()
        await self.proxy.close()
        await self.engine.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.stop()
        if self._dbus is not None:
            self._dbus.disconnect()
        await self._stack.close()


def _status_json(status: Status) -> str:
    from redstone_agent.sub.dbus_api import status_json

    return status_json(status)


async def serve(daemon: SubDaemon) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until someipyd goes away (exit 1, systemd restarts)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Pet the watchdog from the start: a recovery that waits for boot-complete.target
    # runs after READY=1 (SubDaemon.start), when systemd already counts.
    watchdog = loop.create_task(daemon.watchdog())
    await daemon.start()
    background = [watchdog, loop.create_task(daemon.heartbeat())]
    stopped = loop.create_task(stop.wait())
    lost = loop.create_task(daemon.stack_lost())
    await asyncio.wait({stopped, lost}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if lost.done():
        log.error("lost the connection to the SOME/IP daemon; exiting so systemd restarts us")
        status = 1
    else:
        log.info("stopping")
    for task in (*background, stopped, lost):
        task.cancel()
    await daemon.stop()
    return status


def run(config_path: Path) -> int:
    """Entry point of ``redstone-sub run --config PATH``; returns the exit status."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # no-op under the CLI
    try:
        config = load(config_path, SubConfig, section="sub")
        slots_config = load(config_path, SlotsConfig, section="slots")
        use_log_format(config.log_format)
        from redstone_agent.someip.someipy_binding import SomeipyStack

        daemon = SubDaemon(
            config,
            ManagedSlots(slots_config),
            SomeipyStack(config.someip.daemon_socket),
            source=str(config_path),
        )
        return asyncio.run(serve(daemon))
    except RedstoneError as exc:
        log.error("%s", exc)
        return 1
