"""UDS ECUs behind this Sub: fetch, verify, flash and journal (docs/someip.md §11).

The rules are in ``sub/proxy.py``; this module does the I/O around them, one
:class:`ProxiedEcu` per ``[[sub.uds-ecus]]`` entry:

* ProxyInstall is journaled (Downloading) before anything is fetched, then a
  background task fetches the Uptane bundle from the Master's cache, verifies
  it with the Sub's own roots for the proxied serial (``SubTrust``, the code
  PutMetadata uses), checks the job against it, downloads and hashes the
  image(s), journals Flashing and runs the uds ``Flasher``;
* ProxyRollback is journaled (RollingBack), then flashes the verified previous
  image back or switches banks, unless the ECU already runs what it would restore;
* after a restart, :meth:`ProxiedEcu.recover` re-runs what the journal says was
  under way (``proxy.ON_RESTART``).

One conversation with an ECU at a time (a lock): a status refresh never reads
the version DID while the ECU is being flashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redstone_agent.aio import wait_event
from redstone_agent.config import ConfigError
from redstone_agent.errors import RedstoneError
from redstone_agent.journal import Journal, JournalCorrupt, StateWriteError
from redstone_agent.someip.interface import ProxiedState, ResultCode
from redstone_agent.someip.messages import ProxiedStatus, ProxyInstallRequest
from redstone_agent.sub.config import ProxiedEcuConfig, SubConfig, TrustConfig
from redstone_agent.sub.engine import fetch_exact
from redstone_agent.sub.errors import SubError, VerificationFailed, wire_text
from redstone_agent.sub.proxy import (
    BUSY,
    ON_RESTART,
    Command,
    Job,
    JobImage,
    Record,
    Resume,
    RollbackAction,
    Signed,
    after_flash,
    check_install,
    manifest_image,
    require,
    rollback_action,
    rollback_goal,
)
from redstone_agent.sub.trust import Assignment, ManifestSigner, SubTrust
from redstone_agent.transfer import TransferError, open_source
from redstone_agent.uds.config import EcuConfig, load_ecu
from redstone_agent.uds.errors import ImageError, UdsError
from redstone_agent.uds.rollback import Outcome
from redstone_agent.uds.running import Installed

if TYPE_CHECKING:
    # The UDS stack (udsoncan, python-can, can-isotp: 6 MiB resident) loads only
    # on a Sub that has UDS ECUs behind it.
    from redstone_agent.uds.flasher import FlashReport
    from redstone_agent.uds.flasher import Progress as FlashProgress
    from redstone_agent.uds.link import LinkFactory

log = logging.getLogger(__name__)
P = ProxiedState

REFRESH_BUDGET_S = 2.0
"""How long a GetProxiedStatus(refresh) or a ProxyManifest waits for the version DID."""
REBOOT_WAIT_S = 900.0
"""How long the Sub postpones its own reboot for a proxied operation under way."""
NEW_IMAGE = "new.img"
PREVIOUS_IMAGE = "previous.img"
PROGRESS_STEPS = 16
"""While flashing, a PROXIED_STATUS event at most every 1/16 of the image."""

Publish = Callable[[ProxiedStatus], None]


def ecu_dir(state_dir: Path, serial: str) -> Path:
    """``<state-dir>/proxied/<serial>``; a serial unfit for a file name is hashed."""
    name = serial
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", serial):
        name = "serial-" + hashlib.sha256(serial.encode()).hexdigest()[:24]
    return state_dir / "proxied" / name


class ProxiedTrust:
    """Verifies a forwarded bundle for one proxied ECU with the Sub's own roots.

    The director's assignment comes from :class:`SubTrust` (full or partial
    verification, anti-rollback floor and rotated roots kept in the ECU's own
    directory); with full verification the image repository is looked up too,
    for the versions and the previous image the assignment does not cover.
    """

    def __init__(self, config: TrustConfig, serial: str, hardware_id: str, state_dir: Path):
        self._config = config
        self._state_dir = state_dir
        self._trust = SubTrust(config, serial, hardware_id, state_dir)

    def verify(
        self, bundle: bytes, installed_release_counter: int, names: Sequence[str]
    ) -> tuple[Assignment, dict[str, Signed]]:
        assignment = self._trust.verify(bundle, installed_release_counter)
        if self._config.verification == "partial" or self._config.image_root is None:
            return assignment, {}
        from redstone_agent.uptane.bundle import IMAGE, MetadataBundle
        from redstone_agent.uptane.errors import UptaneError
        from redstone_agent.uptane.targetinfo import ImageFields, sha256_of
        from redstone_agent.uptane.trusted import verify_repository
        from redstone_agent.uptane.verifier import system_clock

        # SubTrust keeps a rotated root beside its journal; it wins over the configured one.
        rotated = self._state_dir / f"{IMAGE}.root.json"
        root_path = rotated if rotated.exists() else self._config.image_root
        found: dict[str, Signed] = {}
        try:
            root = root_path.read_bytes()
            repository = MetadataBundle.from_bytes(bundle).repository(IMAGE)
            image = verify_repository(IMAGE, root, repository, system_clock())
        except (OSError, UptaneError) as exc:
            raise VerificationFailed(f"image repository rejected: {exc}") from exc
        for name in names:
            try:  # a role the bundle lacks only means "not verifiable this way"
                target = image.find_target(name)
                if target is None:
                    continue
                fields = ImageFields.from_target(target)
                sha256 = sha256_of(target, "image repository")
            except UptaneError as exc:
                log.info("%s not found in the forwarded image repository: %s", name, exc)
                continue
            version = str(fields.extra.get("version", ""))
            found[name] = Signed(name, target.length, sha256, tuple(fields.hardware_ids), version)
        return assignment, found


class ProxiedEcu:
    """One UDS ECU this Sub flashes for the Master. Coroutines run on the event loop."""

    def __init__(
        self,
        config: ProxiedEcuConfig,
        ecu: EcuConfig,
        trust: TrustConfig,
        state_dir: Path,
        *,
        sub_serial: str,
        key: Path | None,
        publish: Publish,
        link_factory: LinkFactory | None = None,
    ) -> None:
        from redstone_agent.uds.flasher import Flasher
        from redstone_agent.uds.link import open_link

        self.serial = config.serial
        self.hardware_id = config.hardware_id
        self._sub_serial = sub_serial
        self._ecu = ecu
        self._publish = publish
        self._dir = ecu_dir(state_dir, config.serial)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._journal = Journal(self._dir / "ecu.json")
        self._trust = ProxiedTrust(trust, config.serial, config.hardware_id, self._dir)
        self._flasher = Flasher(ecu, link_factory=link_factory or open_link)
        self._signer = ManifestSigner(key) if key is not None else None
        self._record = Record(Installed(config.installed_target))
        self._lock = asyncio.Lock()
        """One conversation with the ECU at a time (a flash owns its session)."""
        self._task: asyncio.Task[None] | None = None
        self._read: asyncio.Task[str | None] | None = None
        self._cancel = threading.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._progress_sent = 0

    # -- observation ------------------------------------------------------------

    @property
    def state(self) -> ProxiedState:
        return self._record.state

    @property
    def busy(self) -> bool:
        return self._record.state in BUSY

    def status(self) -> ProxiedStatus:
        return self._record.status(self.serial)

    async def refreshed_status(self) -> ProxiedStatus:
        """The status after reading the version DID (unless the ECU is busy)."""
        await self._refresh()
        return self.status()

    async def manifest(self, nonce: str) -> bytes:
        """The signed ECU version manifest (docs/someip.md §4.2 ProxyManifestRequest)."""
        if self._signer is None:
            raise SubError(f"no ECU key configured for {self.serial}: cannot sign its manifest")
        r = self._record
        if self.busy:
            verb = "rolling back to" if r.state is P.ROLLING_BACK else "flashing"
            image, version, detail = Installed(""), "", f"{verb} {r.target}"
        else:
            await self._refresh()
            version = self._record.version
            image, detail = manifest_image(self._record, version)
        fields = {
            "ecu_serial": self.serial,
            "filename": image.target,
            "length": image.length,
            "sha256": image.sha256,
            "release_counter": image.release_counter,
            "nonce": nonce,
            "report": {
                "hardware_id": self.hardware_id,
                "transport": self._ecu.transport,
                "version": version,
                "detail": detail,
                "via": self._sub_serial,
            },
        }
        return await asyncio.to_thread(self._signer, fields)

    # -- commands ---------------------------------------------------------------

    async def install(self, request: ProxyInstallRequest) -> None:
        """Accept a ProxyInstall: journal it, then verify, fetch and flash in the background."""
        require(Command.INSTALL, self.serial, self.state)
        job = Job.of(request)
        try:
            self._move(
                P.DOWNLOADING,
                detail=f"verifying and downloading {job.image.target}",
                job=job,
                before=self._record.running,
                flashed=False,
                target=job.image.target,
                bytes_done=0,
                bytes_total=job.image.length,
            )
        except SubError as exc:
            raise SubError(f"install not started: {exc}", ResultCode.INSTALL_FAILED) from exc
        self._start(self._run_install())

    async def rollback(self) -> None:
        """Accept a ProxyRollback: journal it, then restore in the background."""
        require(Command.ROLLBACK, self.serial, self.state)
        goal = rollback_goal(self._record)
        self._move(
            P.ROLLING_BACK,
            detail=f"rolling back to {goal.version or goal.target or 'the previous image'}",
            target=goal.target,
            bytes_done=0,
            bytes_total=0,
        )
        self._start(self._run_rollback())

    async def recover(self) -> None:
        """Load the journal and re-run what was under way (``proxy.ON_RESTART``)."""
        try:
            saved = self._journal.load()
            if saved is not None:
                self._record = Record.from_dict(saved)
        except (JournalCorrupt, KeyError, TypeError, ValueError) as exc:
            log.error("%s: journal %s unreadable (%s)", self.serial, self._journal.path, exc)
            self._move(P.FAILED, error=ResultCode.INTERNAL, detail=f"journal unreadable: {exc}")
            return
        action = ON_RESTART[self.state]
        log.info("%s: recovering from %s: %s", self.serial, self.state.name, action.value)
        if action is Resume.INSTALL:
            self._move(P.DOWNLOADING, detail="resuming the interrupted install", bytes_done=0)
            self._start(self._run_install())
        elif action is Resume.ROLLBACK:
            self._move(P.ROLLING_BACK, detail="resuming the interrupted rollback")
            self._start(self._run_rollback())
        else:
            self._publish(self.status())

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no operation runs (True), or ``timeout`` passed (False)."""
        return await wait_event(self._idle, timeout)

    async def close(self) -> None:
        """Stop between two UDS requests; the journal resumes the operation on start."""
        self._cancel.set()
        for task in (self._task, self._read):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- the background operations -------------------------------------------------

    def _start(self, operation: Any) -> None:
        self._idle.clear()
        self._cancel = threading.Event()
        self._task = asyncio.get_running_loop().create_task(operation)
        self._task.add_done_callback(lambda _task: self._idle.set())

    async def _run_install(self) -> None:
        job = self._record.job
        assert job is not None
        try:
            await self._verify(job)
            new_path = await asyncio.to_thread(self._fetch, job.image, NEW_IMAGE)
            previous_path = None
            if job.previous is not None:
                previous_path = await asyncio.to_thread(self._fetch, job.previous, PREVIOUS_IMAGE)
            version = await self._read_version()
            if version == job.image.version:
                self._move(
                    P.INSTALLED,
                    running=Installed.of(job.image),
                    version=version,
                    flashed=True,
                    detail=f"already runs {version}",
                )
                return
            self._move(P.FLASHING, flashed=True, detail=f"flashing {job.image.version}")
            report = await self._flash(job.image, new_path, job.previous, previous_path)
        except SubError as exc:
            log.warning("%s: install failed: %s", self.serial, exc)
            self._move(P.FAILED, error=exc.code, detail=str(exc))
            return
        except Exception as exc:  # a bug must not leave the ECU "busy" for ever
            log.exception("%s: install failed", self.serial)
            self._move(P.FAILED, error=ResultCode.INTERNAL, detail=f"install failed: {exc}")
            return
        end = after_flash(
            job, self._record.running, report.outcome, report.version_after, report.error
        )
        self._move(
            end.state,
            running=end.running,
            version=report.version_after or "",
            error=end.error,
            detail=end.detail,
        )

    async def _verify(self, job: Job) -> None:
        bundle = await asyncio.to_thread(
            fetch_exact,
            job.metadata_url,
            bytes.fromhex(job.metadata_sha256),
            job.metadata_length,
        )
        running = self._record.running
        names = [job.image.target] + ([job.previous.target] if job.previous else [])
        assignment, signed = await asyncio.to_thread(
            self._trust.verify, bundle, running.release_counter, names
        )
        check_install(
            self.serial,
            self.hardware_id,
            job,
            assignment,
            running,
            signed_new=signed.get(job.image.target),
            signed_previous=signed.get(job.previous.target) if job.previous else None,
        )

    async def _run_rollback(self) -> None:
        record = self._record
        goal = rollback_goal(record)
        try:
            version = await self._read_version()
            previous_path = None
            job = record.job
            if record.flashed and job is not None and job.previous is not None:
                previous_path = await asyncio.to_thread(self._fetch, job.previous, PREVIOUS_IMAGE)
            action = rollback_action(
                version,
                record,
                has_previous_image=previous_path is not None,
                dual_bank=self._ecu.programming.dual_bank,
            )
            log.info("%s: rollback: %s (runs %s)", self.serial, action.value, version)
            if action is RollbackAction.NONE:
                untouched = not record.flashed
                self._move(
                    P.ROLLED_BACK,
                    running=record.running if untouched else goal,
                    version=version or "",
                    detail=f"{'untouched by the last install; ' if untouched else ''}"
                    f"runs {version or 'an unreadable version'}",
                )
            elif action is RollbackAction.FLASH_PREVIOUS:
                assert job is not None and job.previous is not None and previous_path is not None
                report = await self._flash(job.previous, previous_path, None, None)
                self._after_rollback_flash(goal, report)
            elif action is RollbackAction.SWITCH_BANK:
                running = await self._locked(self._switch_bank)
                new_version = job.image.version if job is not None else ""
                if running and running != new_version and goal.matches(running):
                    detail = f"switched back to its other bank, runs {running}"
                    self._move(P.ROLLED_BACK, running=goal, version=running, detail=detail)
                else:
                    self._move(
                        P.FAILED,
                        version=running or "",
                        error=ResultCode.INSTALL_FAILED,
                        detail=f"switched banks but runs {running or 'nothing (bootloader)'}",
                    )
            else:
                self._move(
                    P.FAILED,
                    version=version or "",
                    error=ResultCode.INSTALL_FAILED,
                    detail=f"cannot roll back from {version or 'the bootloader'}: "
                    "no previous image and the ECU is single-bank",
                )
        except SubError as exc:
            log.warning("%s: rollback failed: %s", self.serial, exc)
            self._move(P.FAILED, error=exc.code, detail=f"rollback failed: {exc}")
        except Exception as exc:
            log.exception("%s: rollback failed", self.serial)
            self._move(P.FAILED, error=ResultCode.INTERNAL, detail=f"rollback failed: {exc}")

    def _after_rollback_flash(self, goal: Installed, report: FlashReport) -> None:
        if report.outcome is Outcome.INSTALLED:
            after = report.version_after or goal.version
            self._move(P.ROLLED_BACK, running=goal, version=after, detail=f"runs {after}")
            return
        self._move(
            P.FAILED,
            version=report.version_after or "",
            error=ResultCode.INSTALL_FAILED,
            detail=f"rollback to {goal.version} failed: {report.error}; "
            + (f"it runs {report.version_after}" if report.version_after else "no version"),
        )

    # -- the ECU ------------------------------------------------------------------

    async def _flash(
        self,
        image: JobImage,
        path: Path,
        previous: JobImage | None,
        previous_path: Path | None,
    ) -> FlashReport:
        from redstone_agent.uds.flasher import FlashImage

        data = await asyncio.to_thread(path.read_bytes)
        fallback = None
        if previous is not None and previous_path is not None:
            fallback = FlashImage(
                await asyncio.to_thread(previous_path.read_bytes), previous.version
            )
        loop = asyncio.get_running_loop()
        cancel = self._cancel

        def forward(step: FlashProgress) -> None:  # worker thread
            if step.phase == "download":
                loop.call_soon_threadsafe(self._on_progress, step.done, step.total)

        try:
            async with self._lock:
                return await asyncio.to_thread(
                    self._flasher.install,
                    FlashImage(data, image.version),
                    previous=fallback,
                    progress=forward,
                    cancel=cancel,
                )
        except ImageError as exc:  # refused before touching the ECU
            raise SubError(str(exc), ResultCode.INSTALL_FAILED) from None

    def _on_progress(self, done: int, total: int) -> None:
        r = self._record
        r.bytes_done, r.bytes_total = done, total
        step = max(total // PROGRESS_STEPS, 1)
        if done - self._progress_sent >= step or done >= total:
            self._progress_sent = done
            self._publish(self.status())

    async def _refresh(self) -> None:
        """Read the version DID, waiting at most REFRESH_BUDGET_S (the read goes on)."""
        if self.busy:
            return
        if self._read is None or self._read.done():
            self._read = asyncio.get_running_loop().create_task(self._read_version())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._read), REFRESH_BUDGET_S)

    async def _read_version(self) -> str | None:
        version = await self._locked(self._flasher.read_version)
        if (version or "") != self._record.version:
            self._record.version = version or ""
            self._publish(self.status())
        return version

    async def _locked(self, blocking: Callable[[], str | None]) -> str | None:
        async with self._lock:
            return await asyncio.to_thread(blocking)

    def _switch_bank(self) -> str | None:
        """Dual bank without a previous image: the other bank, reset, the version read back."""
        try:
            return self._flasher.switch_bank()
        except UdsError as exc:
            raise SubError(f"switching banks failed: {exc}", ResultCode.INSTALL_FAILED) from None

    def _fetch(self, image: JobImage, name: str) -> Path:
        """``image`` on disk, hashed; fetched from the Master's cache unless already there."""
        path = self._dir / name
        if _holds(path, image.length, image.sha256):
            return path
        part = path.with_name(name + ".part")
        digest, size = hashlib.sha256(), 0
        try:
            with (
                open_source(image.url, max_bytes=image.length, cancel=self._cancel) as source,
                part.open("wb") as out,
            ):
                for chunk in source:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except TransferError as exc:
            raise SubError(
                f"downloading {image.target} failed: {exc}", ResultCode.TRANSFER_FAILED
            ) from exc
        except OSError as exc:
            raise SubError(
                f"cannot store {image.target}: {exc}", ResultCode.INSTALL_FAILED
            ) from exc
        if size != image.length or digest.hexdigest() != image.sha256:
            part.unlink(missing_ok=True)
            raise VerificationFailed(
                f"{image.target} from {image.url} is not the verified image "
                f"({size} bytes; expected {image.length} with the verified sha256)"
            )
        part.replace(path)
        return path

    # -- journal ------------------------------------------------------------------

    def _move(
        self,
        state: ProxiedState,
        *,
        error: ResultCode = ResultCode.OK,
        detail: str = "",
        **changes: Any,
    ) -> None:
        """Journal the new state (write-ahead), then publish it; all or nothing."""
        r = dataclasses.replace(self._record, **changes)
        r.state, r.error, r.detail = state, error, wire_text(detail)
        r.seq += 1
        try:
            self._journal.save(r.to_dict())
        except StateWriteError as exc:
            raise SubError(f"cannot record {self.serial} state {state.name}: {exc}") from exc
        self._record = r
        self._progress_sent = r.bytes_done
        note = detail if error is ResultCode.OK else f"{error.name}: {detail}"
        log.info("%s: %s%s", self.serial, state.name, f" ({note})" if note else "")
        self._publish(self.status())


def _holds(path: Path, length: int, sha256: str) -> bool:
    try:
        if path.stat().st_size != length:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == sha256


class Proxy:
    """Every UDS ECU this Sub flashes for the Master, by serial."""

    def __init__(self, sub_serial: str, ecus: Mapping[str, ProxiedEcu]) -> None:
        self._sub_serial = sub_serial
        self._ecus = dict(ecus)

    @classmethod
    def build(
        cls,
        config: SubConfig,
        publish: Publish,
        *,
        source: str = "sub.toml",
        link_factory: LinkFactory | None = None,
    ) -> Proxy:
        """One ProxiedEcu per ``[[sub.uds-ecus]]``; a bad file is one line naming its key."""
        ecus: dict[str, ProxiedEcu] = {}
        for i, entry in enumerate(config.uds_ecus):
            key = f"sub.uds-ecus[{i}]"
            try:
                ecu = load_ecu(entry.uds_config)
            except ConfigError as exc:
                raise ConfigError(source, f"{key}.uds-config", str(exc)) from None
            signing_key = entry.ecu_key or config.trust.ecu_key
            if entry.ecu_key is not None and not entry.ecu_key.is_file():
                raise ConfigError(source, f"{key}.ecu-key", f"{entry.ecu_key}: no such file")
            ecus[entry.serial] = ProxiedEcu(
                entry,
                ecu,
                config.trust,
                config.state_dir,
                sub_serial=config.ecu_serial,
                key=signing_key,
                publish=publish,
                link_factory=link_factory,
            )
        return cls(config.ecu_serial, ecus)

    @property
    def serials(self) -> tuple[str, ...]:
        return tuple(self._ecus)

    def ecu(self, serial: str) -> ProxiedEcu:
        """The ECU, or UNKNOWN_ECU naming what this Sub does flash."""
        found = self._ecus.get(serial)
        if found is None:
            flashes = ", ".join(self._ecus) or "none"
            raise SubError(
                f"Sub {self._sub_serial} does not flash an ECU {serial!r} (it flashes: {flashes})",
                ResultCode.UNKNOWN_ECU,
            )
        return found

    def idle(self) -> bool:
        return not any(e.busy for e in self._ecus.values())

    def working(self) -> list[str]:
        return [e.serial for e in self._ecus.values() if e.busy]

    async def recover(self) -> None:
        for ecu in self._ecus.values():
            try:
                await ecu.recover()
            except RedstoneError as exc:  # one ECU's journal must not stop the Sub
                log.error("%s: %s", ecu.serial, exc)

    async def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for ecu in self._ecus.values():
            if not await ecu.wait_idle(max(deadline - time.monotonic(), 0.0)):
                return False
        return True

    async def close(self) -> None:
        for ecu in self._ecus.values():
            await ecu.close()
