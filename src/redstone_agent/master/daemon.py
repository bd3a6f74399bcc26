"""``redstone-master run``: wire the campaign engine to the cloud, the ECUs and systemd.

Start order: the cache server comes up first (a Sub resuming a download after
our restart needs it), then systemd hears READY, then the engine recovers
from its journal in the background (it may resume or roll back a campaign
that takes minutes) and the poll loop starts. ``SIGUSR1`` (``redstone-master
check-now``) polls at once.

Status for ``redstone-master status`` is ``<state-dir>/status.json``, written
atomically after every journaled transition and at most twice a second for
progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redstone_agent.aio import wait_event
from redstone_agent.cloud.client import DeviceClient
from redstone_agent.cloud.config import CloudConfig
from redstone_agent.cloud.schedule import PollSchedule
from redstone_agent.errors import RedstoneError
from redstone_agent.journal import Journal, atomic_write
from redstone_agent.master.adapters import CloudAdapter, TrustAdapter
from redstone_agent.master.cache import Cache
from redstone_agent.master.cache_server import CacheServer
from redstone_agent.master.campaign_log import CampaignLog
from redstone_agent.master.certificate import Certificate, Tunnel
from redstone_agent.master.controller import LogRing, MasterController
from redstone_agent.master.diagnostics import DiagnosticPort
from redstone_agent.master.ecu_self import SelfPort
from redstone_agent.master.engine import Engine, Hooks
from redstone_agent.master.policy import ConsentStore, Preconditions, VehiclePolicy
from redstone_agent.master.ports import EcuPort, OfferedCampaign, SelfUpdate, TrustPort
from redstone_agent.master.record import CampaignRecord
from redstone_agent.master.states import SETTLED
from redstone_agent.master.statusfile import PID_FILE, STATUS_FILE
from redstone_agent.master.topology import EcuKind, EcuSpec, MasterConfig, load_master_config
from redstone_agent.retry import RetryPolicy
from redstone_agent.service.logfmt import use_log_format
from redstone_agent.service.sdnotify import Notifier
from redstone_agent.someip.binding import Stack
from redstone_agent.uptane.keys import Signer, load_signer
from redstone_agent.uptane.primary import PrimaryConfig, PrimaryVerifier
from redstone_agent.uptane.verifier import TrustedRoots

if TYPE_CHECKING:
    from redstone_agent.someip.client import SubClient

log = logging.getLogger("redstone.master")
PROGRESS_INTERVAL_S = 0.5
KILL_IN_ENV = "REDSTONE_MASTER_KILL_IN"
"""Fault injection for power-cut tests: SIGKILL ourselves right after journaling this state."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RedstoneError(f"{what} {path}: {exc.strerror or exc}") from None


class MasterDaemon:
    """One running Master: engine, cache server, cloud client, ECU ports, systemd notify."""

    def __init__(
        self, config: MasterConfig, stack: Stack | None, config_path: Path | None = None
    ) -> None:
        self.config = config
        self._config_path = str(config_path or "master.toml")
        """Where relative paths of a bootloader ECU's ``bootscript`` table start."""
        self._stack = stack
        self._notifier = Notifier()
        self._check_now = asyncio.Event()
        self._last_publish = 0.0
        self._flush: asyncio.TimerHandle | None = None
        self._last_state = ""
        self._kill_in = os.environ.get(KILL_IN_ENV, "")
        self._campaign_log = CampaignLog()
        logging.getLogger().addHandler(self._campaign_log)
        self._log_ring = LogRing()
        logging.getLogger().addHandler(self._log_ring)
        state_dir = config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._status_path = state_dir / STATUS_FILE
        signer = load_signer(config.ecu_key)
        self.cache = Cache(config.cache.directory, config.cache.budget_mib << 20)
        self.server = CacheServer(self.cache, config.cache.address, config.cache.port)
        cloud = config.cloud
        cloud_config = CloudConfig(
            url=cloud.url,
            vin=config.vin,
            cert=cloud.cert,
            key=cloud.key,
            ca=cloud.ca,
            timeout=cloud.timeout_s,
            poll_interval_s=cloud.poll_interval_s,
        )
        tunnel = (
            Tunnel(cloud.tunnel_cert, cloud.tunnel_key, cloud.tunnel_reload)
            if cloud.tunnel_cert is not None and cloud.tunnel_key is not None
            else None
        )
        self._certificate = Certificate(
            cloud_config, cloud.enroll_token, cloud.renew_before_days, tunnel=tunnel
        )
        self._certificate.prepare()
        self.client = DeviceClient(cloud_config)
        self._roots = TrustedRoots(
            _read(config.trust.director_root, "trust.director-root"),
            _read(config.trust.image_root, "trust.image-root"),
        )
        primary = PrimaryVerifier(
            PrimaryConfig(
                director_url=self.client.director_url,
                image_url=self.client.image_url,
                image_targets_url=self.client.targets_url,
                cache_dir=state_dir / "uptane",
                # [master.cloud] timeout-s holds for metadata and images too, not only polls.
                retry=RetryPolicy(timeout=cloud.timeout_s),
            ),
            self._roots,
            session=self.client.session,
        )
        self._signer = signer
        self._primary = primary
        self.schedule = PollSchedule(interval_s=cloud.poll_interval_s)
        self.ports: dict[str, EcuPort] = {}
        self.cloud: CloudAdapter | None = None
        self.engine: Engine | None = None
        self.controller: MasterController | None = None
        self.consent = ConsentStore(state_dir / "consent")
        self._vehicle: Any = None
        """CAN preconditions (``vehicle.provider.CanPreconditions``) with ``[master.vehicle]``."""
        self._dbus: Any = None
        self._dbus_iface: Any = None

    def _wire(self) -> Engine:
        """Ports and engine; SOME/IP clients need a connected stack, so this runs in start()."""
        config, signer = self.config, self._signer
        state_dir = config.state_dir
        self.ports = {e.serial: self._port(e, signer) for e in config.ecus}
        self.cloud = CloudAdapter(
            self.client,
            vin=config.vin,
            primary_serial=config.primary.serial,
            ecus=self.ports,
            signer=signer,
        )
        preconditions: Preconditions | None = self._vehicle
        engine = Engine(
            ecus=config.ecus,
            ports=self.ports,
            cloud=self.cloud,
            trust=TrustAdapter(self._primary, self.cache, self.server, config.ecus),
            policy=VehiclePolicy(config.consent, self.consent, preconditions),
            journal=Journal(state_dir / "campaign.json"),
            plan_journal=Journal(state_dir / "plan.json"),
            hooks=Hooks(publish=self._publish),
            activation=config.activation,
            interrupt=config.vehicle is not None and config.vehicle.on_break == "abort",
            open_bundle=self._open_bundle,
            diagnostics=self._diagnostic_ports(),
            dtc_status_mask=config.diagnostics.dtc_status_mask,
            clear_new_dtcs=config.diagnostics.clear_new_dtcs,
            self_update=self._self_update(),
        )
        self.controller = MasterController(engine, self.consent, self.check_now, self._log_ring)
        return engine

    def _self_update(self) -> SelfUpdate | None:
        """``[master.self]``: the new TBox image's checks and the reboot (docs/master.md §2)."""
        settings = self.config.self
        if settings is None:
            return None
        from redstone_agent.master.self_checks import health_checks, reboot

        health = settings.health
        argv = list(settings.reboot_command)
        return SelfUpdate(
            reboot=lambda: reboot(argv),
            checks=health_checks(health, self.client.nonce),
            ecus_answer=health.ecus,
            timeout_s=health.timeout_s,
            interval_s=health.interval_s,
        )

    async def _open_bundle(self, path: str) -> tuple[OfferedCampaign, TrustPort]:
        """An offline bundle's campaign, verified against the same pinned roots (docs/bundle.md)."""
        from redstone_agent.master.bundle import open_bundle

        config = self.config
        return await open_bundle(
            Path(path),
            vin=config.vin,
            ecus=config.ecus,
            roots=self._roots,
            metadata_dir=config.state_dir / "uptane",
            cache=self.cache,
            server=self.server,
        )

    def _diagnostic_ports(self) -> dict[str, DiagnosticPort]:
        """The ECUs read before and after each campaign: every UDS ECU the Master flashes."""
        if not self.config.diagnostics.enabled:
            return {}
        from redstone_agent.master.ecu_uds import UdsPort

        return {s: p for s, p in self.ports.items() if isinstance(p, UdsPort)}

    def _port(self, spec: EcuSpec, master_signer: Signer) -> EcuPort:
        if spec.kind is EcuKind.SUB:
            from redstone_agent.master.ecu_sub import SubPort

            return SubPort(spec, self._sub_client(spec), self.config.timeouts)
        if spec.behind:  # a UDS ECU its Sub flashes for us (docs/someip.md §11)
            from redstone_agent.master.ecu_proxied import ProxiedPort

            host = self.config.ecu(spec.behind)
            assert host is not None  # check_topology
            return ProxiedPort(spec, self._sub_client(host), self.config.timeouts)
        signer = load_signer(spec.ecu_key) if spec.ecu_key else master_signer
        if spec.kind is EcuKind.SELF:
            own = self.config.self
            slots = None
            if own is not None:
                from redstone_agent.slots import SlotManager

                slots = SlotManager(own.slots)
            return SelfPort(spec, signer, self.config.state_dir, slots)
        if spec.kind is EcuKind.BOOTLOADER:
            return self._bootloader_port(spec, signer)
        from redstone_agent.master.ecu_uds import UdsPort
        from redstone_agent.uds.config import load_ecu

        assert spec.uds_config is not None
        return UdsPort(spec, load_ecu(spec.uds_config), self.config.state_dir, signer)

    def _bootloader_port(self, spec: EcuSpec, signer: Signer) -> EcuPort:
        """The TBox's boot script (its two copies), switched in the self slots' U-Boot env."""
        from redstone_agent.master.ecu_bootloader import BootloaderPort
        from redstone_agent.master.topology import bootscript_config
        from redstone_agent.slots.bootloader import UBootEnv
        from redstone_agent.slots.bootscript import BootScriptStore

        own = self.config.self
        assert own is not None  # check_topology
        script = bootscript_config(spec, self._config_path)
        store = BootScriptStore(script, UBootEnv(own.slots.bootloader.uboot))
        return BootloaderPort(spec, store, signer)

    def _sub_client(self, sub: EcuSpec) -> SubClient:
        """The SOME/IP client of Sub ``sub`` (open_sub_client shares one per Sub)."""
        from redstone_agent.someip.client import open_sub_client

        assert self._stack is not None
        some = self.config.someip
        return open_sub_client(
            self._stack,
            sub.serial,
            sub.instance_id,
            some.address,
            base_port=some.port,
            timeout=some.call_timeout_s,
        )

    def _publish(self, record: CampaignRecord) -> None:
        """status.json for ``redstone-master status``; STATUS= for systemctl status."""
        now = time.monotonic()
        changed = f"{record.state.value}:{record.seq}" != self._last_state
        if not changed and now - self._last_publish < PROGRESS_INTERVAL_S:
            # Throttled, not dropped: the last change of a burst (an ECU that now
            # waits for the car to park) is published when the interval is over.
            if self._flush is None:
                wait = PROGRESS_INTERVAL_S - (now - self._last_publish)
                self._flush = asyncio.get_running_loop().call_later(wait, self._flush_now, record)
            return
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._last_state, self._last_publish = f"{record.state.value}:{record.seq}", now
        if changed and record.state.value == self._kill_in:
            log.warning("%s=%s: killing this process now", KILL_IN_ENV, self._kill_in)
            os.kill(os.getpid(), signal.SIGKILL)
        data = {**record.to_dict(), "updated": time.time(), "pid": os.getpid()}
        try:
            atomic_write(self._status_path, json.dumps(data, indent=1).encode(), mode=0o644)
        except OSError as exc:
            log.warning("cannot write %s: %s", self._status_path, exc)
        campaign = f" {record.campaign}" if record.campaign else ""
        self._notifier.status(f"{record.state.value}{campaign}: {record.detail}")
        if self.controller is not None:
            self.controller.published(record)
        if changed:
            self._follow_log(record)

    def _flush_now(self, record: CampaignRecord) -> None:
        self._flush = None
        self._publish(self.engine.record if self.engine is not None else record)

    def _follow_log(self, record: CampaignRecord) -> None:
        """Collect the campaign's log lines; upload them when it ends (docs/api.md §3.5)."""
        if record.state not in SETTLED:
            if not self._campaign_log.active:
                self._campaign_log.start()
            return
        if not self._campaign_log.active or self.cloud is None:
            return
        text, cloud = self._campaign_log.take(), self.cloud
        task = asyncio.get_running_loop().create_task(
            cloud.upload_log(record.campaign, "redstone-master", text)
        )
        task.add_done_callback(_log_upload_result)

    async def start(self) -> None:
        if self._stack is not None:
            await self._stack.connect()
        if self.config.vehicle is not None:
            from redstone_agent.vehicle.provider import CanPreconditions

            self._vehicle = CanPreconditions(self.config.vehicle)  # rule/DBC errors stop us
            try:
                await self._vehicle.start()
            except RedstoneError as exc:
                # No CAN is no vehicle state: every rule counts as unknown, so campaigns
                # wait (status names the rule) instead of the Master not starting at all.
                log.error("vehicle state unavailable, campaigns will wait: %s", exc)
        self.engine = self._wire()
        await self.server.start()
        await self._export_dbus()
        (self.config.state_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        self._notifier.ready("serving the cache; recovering")
        log.info(
            "Master for %s: %d ECUs, cache on %s:%d",
            self.config.vin,
            len(self.config.ecus),
            self.config.cache.address,
            self.server.port,
        )

    async def _export_dbus(self) -> None:
        """Publish org.redstone.Master1; without a bus the campaign still runs (logged)."""
        where = self.config.dbus
        if where == "none" or self.controller is None:
            return
        kind, address = (where, None) if where in ("system", "session") else ("system", where)
        try:
            from redstone_agent.master.dbus_api import export

            self._dbus, self._dbus_iface = await export(self.controller, kind, address)
        except Exception as exc:
            log.error("D-Bus API not available on the %s bus: %s", where, exc)
        else:
            log.info("D-Bus API org.redstone.Master1 on the %s bus", where)

    def check_now(self) -> None:
        self._check_now.set()
        if self.engine is not None:
            self.engine.nudge()

    async def poll_loop(self) -> None:
        """Recover, then poll: the server's interval after success, backoff after errors."""
        engine, cloud = self.engine, self.cloud
        assert engine is not None and cloud is not None, "start() first"
        try:
            await engine.recover()
        except RedstoneError as exc:
            log.error("recovery: %s", exc)
        while True:
            await self._certificate.renew_if_due(self.client)
            try:
                ran = await engine.check()
                delay = 0.0 if ran else self.schedule.after_success(cloud.poll_interval_s)
            except RedstoneError as exc:
                delay = self.schedule.after_error()
                log.warning("poll failed (%s); next try in %.0f s", exc, delay)
            except Exception:
                # A bug must not end the poll loop silently: the journal keeps the
                # campaign, and the next round resumes it.
                delay = self.schedule.after_error()
                log.exception("campaign step failed unexpectedly; next try in %.0f s", delay)
            if delay > 0:
                self._check_now.clear()
                await wait_event(self._check_now, delay)

    async def watchdog(self) -> None:
        await self._notifier.keep_alive()

    async def stop(self) -> None:
        self._notifier.stopping()
        if self._dbus is not None:
            self._dbus.disconnect()
        if self._vehicle is not None:
            await self._vehicle.close()
        await self.server.close()
        if self._stack is not None:
            with contextlib.suppress(Exception):
                await self._stack.close()
        self.client.close()
        with contextlib.suppress(OSError):
            (self.config.state_dir / PID_FILE).unlink()


def _log_upload_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("campaign log not uploaded: %s", task.exception())


async def serve(daemon: MasterDaemon) -> int:
    """Run until SIGTERM/SIGINT; a campaign in progress stays journaled and resumes."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, daemon.check_now)
    await daemon.start()
    tasks = [loop.create_task(daemon.poll_loop()), loop.create_task(daemon.watchdog())]
    await stop.wait()
    log.info("stopping")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await daemon.stop()
    return 0


def run(config_path: Path) -> int:
    """Entry point of ``redstone-master run``; returns the exit status."""
    config = load_master_config(config_path)
    use_log_format(config.log_format)
    stack: Stack | None = None
    if any(e.kind is EcuKind.SUB for e in config.ecus):
        from redstone_agent.someip.someipy_binding import SomeipyStack

        stack = SomeipyStack(config.someip.daemon_socket)
    return asyncio.run(_main(config, stack, config_path))


async def _main(config: MasterConfig, stack: Stack | None, config_path: Path) -> int:
    return await serve(MasterDaemon(config, stack, config_path))
