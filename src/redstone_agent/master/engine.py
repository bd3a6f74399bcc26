"""The vehicle campaign: decides what happens when, journals before it acts.

One campaign at a time runs through the states of ``master/states.py``::

    idle -> syncing -> downloading -> awaiting -> transferring -> processing
         -> activating -> verifying [-> updating-tbox -> tbox-trial] -> committing -> done
    (any failure from transferring to tbox-trial) -> rolling-back -> failed

Nothing before *transferring* touches an ECU, so a failure there (bad
metadata, a cache that cannot hold the images, consent refused) ends in
*failed* with the vehicle untouched. From *transferring* to *verifying* a
failure of any ECU rolls every ECU back (all-old). *committing* is the commit
point: from there on the campaign only goes forward (all-new).

The TBox's own ECUs (``states.SCOPE``) are updated once every other ECU runs
its new image: *updating-tbox* writes them, *tbox-trial* reboots the TBox
(write-ahead: journaled first) and decides after the reboot, in whichever
Master comes up — the new one checks its health and commits or rejects its
slot; the old one (rejected, or the bootloader fell back) rolls back.

Write-ahead: :meth:`Engine._move` saves the record before the step it
announces runs; the verified plan is saved once. :meth:`Engine.recover`
reads both after a restart and does what ``states.ON_RESTART`` says. The
engine does no I/O of its own: ECUs, cloud, trust/cache, policy, clock and
sleep are injected (``master/ports.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redstone_agent.errors import RedstoneError
from redstone_agent.journal import Journal, JournalCorrupt
from redstone_agent.master.control import ControlError
from redstone_agent.master.diagnostics import (
    DiagnosticPort,
    Snapshot,
    clear_new_dtcs,
    diff,
    report,
    summary,
    take_snapshot,
)
from redstone_agent.master.errors import CampaignRefused, DownloadPaused, EcuFailed
from redstone_agent.master.gating import Gatekeeper, Interrupted
from redstone_agent.master.orchestrate import PhaseResult, run_phase
from redstone_agent.master.ports import (
    Cause,
    Clock,
    CloudPort,
    Decision,
    EcuJob,
    EcuPort,
    EcuStanding,
    Gate,
    HealthCheck,
    OfferedCampaign,
    Policy,
    ProgressFn,
    SelfUpdate,
    SelfUpdatePort,
    StepResult,
    TrustPort,
    Verdict,
    VerifiedCampaign,
)
from redstone_agent.master.record import (
    CampaignRecord,
    EcuOutcome,
    EcuRecord,
    image_name,
    plan_from_dict,
    plan_to_dict,
)
from redstone_agent.master.self_health import assess
from redstone_agent.master.states import (
    ECU_TOUCHING,
    ON_RESTART,
    SCOPE,
    SETTLED,
    CampaignState,
    Restart,
    require,
)
from redstone_agent.master.topology import EcuKind, EcuSpec, Tier

log = logging.getLogger(__name__)
S = CampaignState

TRANSPORTS = {
    EcuKind.SUB: "someip",
    EcuKind.UDS_DOCAN: "docan",
    EcuKind.UDS_DOIP: "doip",
    EcuKind.SELF: "self",
    EcuKind.BOOTLOADER: "self",
}

StepFn = Callable[[EcuPort, EcuJob], Awaitable[StepResult]]
BundleOpener = Callable[[str], Awaitable[tuple[OfferedCampaign, TrustPort]]]
"""Open an offline bundle by path: its offer and the trust port that verifies it."""


@dataclass(frozen=True)
class Stage:
    """One ECU operation inside a phase, with the step names the record shows."""

    doing: str
    done: str
    step: StepFn


@dataclass
class Hooks:
    """How the engine tells the daemon what it does and how it waits."""

    publish: Callable[[CampaignRecord], None] = lambda _record: None
    """Called after every journaled change and on progress (the daemon throttles)."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Clock = time.monotonic
    wait_poll_s: float = 5.0
    """How often a waiting campaign asks the policy again (it also asks at once
    when the policy reports a change)."""
    retry_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    """Pauses between attempts of a step that must not give up (commit, rollback)."""


class Engine:
    """One vehicle's campaigns. All coroutines run on one event loop."""

    def __init__(
        self,
        *,
        ecus: Sequence[EcuSpec],
        ports: Mapping[str, EcuPort],
        cloud: CloudPort,
        trust: TrustPort,
        policy: Policy,
        journal: Journal,
        plan_journal: Journal,
        hooks: Hooks | None = None,
        activation: Literal["as-ready", "together"] = "as-ready",
        interrupt: bool = False,
        open_bundle: BundleOpener | None = None,
        diagnostics: Mapping[str, DiagnosticPort] | None = None,
        dtc_status_mask: int = 0x09,
        clear_new_dtcs: bool = False,
        self_update: SelfUpdate | None = None,
    ) -> None:
        self._specs = {e.serial: e for e in ecus}
        self._ports = ports
        self._cloud = cloud
        self._trust = trust
        self._policy = policy
        self._journal = journal
        self._plan_journal = plan_journal
        self._hooks = hooks or Hooks()
        self._activation = activation
        self._interrupt = interrupt
        """``[master.vehicle] on-break = "abort"``: a broken rule stops a running UDS flash."""
        self._open_bundle = open_bundle
        self._diagnostics = dict(diagnostics or {})
        """UDS ECUs read before and after every campaign (versions, DTCs)."""
        self._dtc_mask = dtc_status_mask
        self._clear_new_dtcs = clear_new_dtcs
        self._self_update = self_update
        """``[master.self]``: how the TBox reboots and checks its new image (None: it
        does not update itself, and a campaign naming its ECUs is refused)."""
        self._rebooting = False
        """This process asked for the TBox's reboot: it only waits to be stopped."""
        self._bundle_trust: TrustPort | None = None
        self._gates = Gatekeeper(
            policy,
            lambda: (self._record.campaign, self._record.consent_required),
            poll_s=self._hooks.wait_poll_s,
        )
        self._background: set[asyncio.Task[None]] = set()
        self._record = CampaignRecord()
        self._plan: VerifiedCampaign | None = None
        self._lock = asyncio.Lock()
        self._reported = False
        """Whether this process has sent a manifest yet (the first poll waits for one)."""

    # -- observation -----------------------------------------------------------

    @property
    def record(self) -> CampaignRecord:
        return self._record

    @property
    def state(self) -> CampaignState:
        return self._record.state

    # -- journaling --------------------------------------------------------------

    def _move(self, state: CampaignState, detail: str = "", *, error: str | None = None) -> None:
        """Journal the new state (write-ahead), log one line, tell the cloud and status."""
        r = self._record
        if state is not r.state:
            require(r.state, state)
        r.state, r.detail = state, detail
        if error is not None:
            r.error = error
        r.seq += 1
        self._journal.save(r.to_dict())
        log.info(
            "campaign %s: %s%s",
            r.campaign or "-",
            state.value,
            f" ({detail})" if detail else "",
            extra={"state": state.value, "seq": r.seq, "campaign": r.campaign},
        )
        self._hooks.publish(r)
        self._event("state", state=state.value, detail=detail, error=r.error)

    def _save(self) -> None:
        self._journal.save(self._record.to_dict())
        self._hooks.publish(self._record)

    def _event(self, kind: str, serial: str = "", **detail: Any) -> None:
        """Fire and forget: events are reports; the signed manifest is the truth."""
        if not self._record.campaign:
            return
        task = asyncio.get_running_loop().create_task(
            self._cloud.event(kind, self._record.campaign, serial, **detail)
        )
        task.add_done_callback(_log_event_failure)

    def _ecu(self, serial: str, step: str, detail: str = "", **changes: Any) -> None:
        ecu = self._record.ecus[serial]
        ecu.step, ecu.detail = step, detail
        for key, value in changes.items():
            setattr(ecu, key, value)
        self._save()
        log.info("%s: %s%s", serial, step, f" ({detail})" if detail else "")
        self._event("ecu_step", serial, step=step, detail=detail)

    # -- the polling entry point ---------------------------------------------------

    async def check(self) -> bool:
        """Poll the cloud and run an offered campaign. True if a campaign ended now
        (the caller polls again at once); False to wait for the next poll.

        An unfinished campaign (a paused download, a commit that could not
        reach an ECU) is resumed instead of polling.
        """
        if self._rebooting:
            return False  # the TBox reboots; the Master that comes up goes on
        offer = None
        if self.state in SETTLED and not self._lock.locked():
            # Network calls outside the lock: a USB bundle or a cancel from D-Bus must
            # not wait for a poll that hangs on a dead link.
            if not self._reported:
                # The director offers a delta only from an image a manifest reported,
                # and it fixes its offer at the first poll: report before polling.
                await self._cloud.report_manifest()
                self._reported = True
            offer = await self._cloud.poll()
        async with self._lock:
            if self.state not in SETTLED:
                await self._resume()
                return self.state in SETTLED
            if offer is None:
                return False
            if offer.campaign == self._record.campaign:
                return False  # this campaign already ended here; the cloud has our report
            await self._run(offer)
            return self.state in SETTLED

    async def recover(self) -> None:
        """After a start: load the journal and do what ON_RESTART says for its state."""
        async with self._lock:
            try:
                saved = self._journal.load()
                self._record = CampaignRecord.from_dict(saved) if saved else CampaignRecord()
                raw_plan = self._plan_journal.load()
                self._plan = plan_from_dict(raw_plan) if raw_plan else None
            except (JournalCorrupt, KeyError, TypeError, ValueError) as exc:
                log.error("journal unreadable (%s): starting idle", exc)
                self._record = CampaignRecord(error=f"journal unreadable: {exc}")
                self._save()
                return
            action = ON_RESTART[self.state]
            log.info(
                "recovering campaign %s from %s: %s",
                self._record.campaign or "-",
                self.state.value,
                action.value,
            )
            self._hooks.publish(self._record)
            if action is not Restart.NOTHING:
                await self._resume()

    # -- the operator's commands (D-Bus, redstonectl) -------------------------------

    def nudge(self) -> None:
        """A consent answer arrived: a waiting gate asks the policy again now."""
        self._gates.nudge()

    async def cancel(self, reason: str = "cancelled by the user") -> None:
        """Stop the campaign: untouched -> failed; touched -> rolled back (all-old).
        Returns at once; the campaign ends in the background."""
        state = self.state
        if state in SETTLED:
            raise ControlError("NoCampaign", f"no campaign to cancel (state: {state.value})")
        if state is S.COMMITTING:
            raise ControlError(
                "PastCommitPoint",
                "the campaign is past its commit point and completes forward (all-new)",
            )
        if state is S.ROLLING_BACK:
            return
        log.warning("campaign %s: %s", self._record.campaign, reason)
        self._gates.abort(reason)
        self._in_background()

    async def rollback(self) -> None:
        """Roll every touched ECU back now (only between the first touch and the commit)."""
        if self.state not in ECU_TOUCHING and self.state is not S.ROLLING_BACK:
            if self.state is S.COMMITTING:
                await self.cancel()  # raises PastCommitPoint
            raise ControlError(
                "NotTouched",
                f"no ECU has been touched yet (state: {self.state.value}); cancel stops it",
            )
        await self.cancel("rollback requested by the user")

    async def install_bundle(self, path: str) -> str:
        """Run the campaign of an offline bundle; return its name once it is verified
        (ControlError BadBundle with the one-line reason when it is not)."""
        if self._open_bundle is None:
            raise ControlError("BadBundle", "this Master cannot install offline bundles")
        async with self._lock:
            if self.state not in SETTLED:
                raise ControlError(
                    "Busy", f"campaign {self._record.campaign} is {self.state.value}"
                )
            try:
                offer, trust = await self._open_bundle(path)
            except RedstoneError as exc:
                raise ControlError("BadBundle", _one_line(exc)) from None
            self._bundle_trust = trust
            self._start(offer, source=path)
            await self._sync()
            if self.state is S.FAILED:
                raise ControlError("BadBundle", self._record.error)
        self._in_background()
        return offer.campaign

    def _in_background(self) -> None:
        """Let the campaign go on from its journaled state (the caller does not wait)."""

        async def resume() -> None:
            async with self._lock:
                await self._resume()

        if self._lock.locked():
            return  # the running campaign sees the command at its next gate
        task = asyncio.get_running_loop().create_task(resume())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_background_failure)

    # -- the campaign ----------------------------------------------------------------

    def _start(self, offer: OfferedCampaign, *, source: str = "") -> None:
        self._gates.reset()
        self._record = CampaignRecord(
            campaign=offer.campaign,
            consent_required=offer.consent_required,
            last_report=self._record.last_report,
            seq=self._record.seq,
            state=self._record.state,
            source=source,
            release_notes_url=offer.release_notes_url,
        )
        self._plan = None
        self._plan_journal.save({})
        where = f"from bundle {source}" if source else "reporting versions"
        self._move(S.SYNCING, f"{where}; verifying metadata")

    async def _run(self, offer: OfferedCampaign) -> None:
        self._bundle_trust = None
        self._start(offer)
        await self._resume()

    async def _resume(self) -> None:
        """Run the campaign from the journaled state to a settled one."""
        steps: dict[CampaignState, Callable[[], Awaitable[None]]] = {
            S.SYNCING: self._sync,
            S.DOWNLOADING: self._download,
            S.AWAITING: self._await_go,
            S.TRANSFERRING: self._transfer,
            S.PROCESSING: self._processing,
            S.ACTIVATING: self._activate,
            S.VERIFYING: self._verifying,
            S.UPDATING_TBOX: self._update_tbox,
            S.TBOX_TRIAL: self._tbox_trial,
            S.COMMITTING: self._commit,
            S.ROLLING_BACK: self._roll_back,
        }
        while self.state not in SETTLED:
            before = (self.state, self._record.seq)
            await steps[self.state]()
            if (self.state, self._record.seq) == before:
                return  # the step decided to wait (AWAITING) or to retry later (COMMITTING)

    async def _sync(self) -> None:
        try:
            if self._record.source:
                offer, trust = await self._bundle()
                running = await self._cloud.collect_running()
            else:
                trust = self._trust
                running = await self._cloud.report_manifest()
                self._reported = True
                polled = await self._cloud.poll()
                if polled is None or polled.campaign != self._record.campaign:
                    self._move(S.IDLE, "the offer was withdrawn")
                    return
                offer = polled
            plan = await trust.verify(offer, running)
            self._check_plan(plan)
        except RedstoneError as exc:
            self._fail_untouched(_one_line(exc))
            return
        self._plan = plan
        self._plan_journal.save(plan_to_dict(plan))
        self._record.ecus = {
            serial: EcuRecord(
                serial=serial,
                kind=self._specs[serial].kind.value,
                transport=_transport(self._specs[serial]),
                old=image_name(running.get(serial, "")),
                new=image_name(image.target),
            )
            for serial, image in plan.targets.items()
        }
        self._move(S.DOWNLOADING, f"{len(plan.targets)} ECU(s) to update")

    def _check_plan(self, plan: VerifiedCampaign) -> None:
        for serial in plan.targets:
            spec = self._specs.get(serial)
            if spec is None:
                raise CampaignRefused(f"the campaign names ECU {serial}, which this vehicle lacks")
            if spec.kind.tier is Tier.TBOX and self._self_update is None:
                raise CampaignRefused(
                    f"the campaign updates the TBox itself ({serial}), but this Master "
                    "has no [master.self] (its own slots, health check and reboot)"
                )
        if not plan.targets:
            raise CampaignRefused("the director assigns no image to any ECU of this vehicle")
        kinds = {self._specs[s].kind for s in plan.targets}
        if EcuKind.BOOTLOADER in kinds and EcuKind.SELF not in kinds:
            raise CampaignRefused(
                "the campaign updates the TBox's boot script without its rootfs; only a "
                "reboot into a new rootfs slot proves a boot script before it is committed"
            )

    async def _bundle(self) -> tuple[OfferedCampaign, TrustPort]:
        """The running campaign's bundle (opened again after a restart)."""
        if self._open_bundle is None:
            raise CampaignRefused("this Master cannot install offline bundles")
        offer, trust = await self._open_bundle(self._record.source)
        if offer.campaign != self._record.campaign:
            raise CampaignRefused(
                f"bundle {self._record.source} now holds campaign {offer.campaign}, "
                f"not {self._record.campaign}"
            )
        self._bundle_trust = trust
        return offer, trust

    async def _download(self) -> None:
        if not await self._gate(Gate.DOWNLOAD):
            return
        self._event("download_started")
        plan = self._require_plan()
        try:
            trust = self._trust
            if self._record.source:
                trust = self._bundle_trust or (await self._bundle())[1]
            fetched = await trust.fetch(plan, self._download_progress)
        except DownloadPaused as exc:
            # Out of coverage is normal for a vehicle: keep what is downloaded and
            # continue (by Range) at the next poll instead of failing the campaign.
            self._record.detail = f"download paused, continuing at the next poll: {exc}"
            self._save()
            log.warning("campaign %s: %s", self._record.campaign, self._record.detail)
            return
        except RedstoneError as exc:
            self._fail_untouched(str(exc))
            return
        for serial, cost in fetched.items():
            if serial in self._record.ecus:
                self._record.ecus[serial].bytes_downloaded += cost.downloaded
                self._record.ecus[serial].bytes_saved = cost.saved
        self._move(S.AWAITING, "downloaded and verified; checking consent and preconditions")

    def _download_progress(self, done: int, total: int) -> None:
        self._record.detail = f"downloading {done >> 20}/{total >> 20} MiB"
        self._hooks.publish(self._record)

    async def _await_go(self) -> None:
        if await self._gate(Gate.INSTALL):
            await self._diagnose_before()
            self._event("install_started")
            self._move(S.TRANSFERRING, "installing on every ECU")

    async def _gate(self, gate: Gate) -> bool:
        """Wait at a campaign-wide gate: True when allowed; False when refused
        (then the campaign has failed untouched or is rolling back)."""
        verdict = await self._gates.hold(gate, lambda v: self._waiting(gate, v))
        self._passed(verdict)
        if verdict.decision is Decision.ALLOW:
            return True
        why = f"refused before {gate.value}: {verdict.reason}"
        if self.state in (S.SYNCING, S.DOWNLOADING, S.AWAITING):
            self._fail_untouched(why)
        else:
            self._record.error = why
            self._move(S.ROLLING_BACK, why)
        return False

    def _waiting(self, gate: Gate, verdict: Verdict, serial: str = "") -> None:
        """A gate answered WAIT (or a new reason to wait): status, log and events say why."""
        r = self._record
        r.blocked_by = verdict.reason
        r.detail = f"waiting before {gate.value}: {verdict.reason}"
        if serial:
            self._ecu(serial, "waiting", verdict.reason)
        else:
            self._save()
            log.info("campaign %s: %s", r.campaign, r.detail)
        if verdict.cause is Cause.CONSENT and r.consent != "asked":
            r.consent = "asked"
            self._event("consent_requested", gate=gate.value)
        elif verdict.cause is Cause.POSTPONED and r.consent != "postponed":
            r.consent = "postponed"
            self._event("consent_postponed", reason=verdict.reason)
        elif verdict.cause is Cause.VEHICLE:
            self._event("precondition_blocked", gate=gate.value, reason=verdict.reason)

    def _passed(self, verdict: Verdict) -> None:
        """A gate answered ALLOW or REFUSE: clear the block, report consent once."""
        r = self._record
        r.blocked_by = ""
        if verdict.cause is Cause.CONSENT and verdict.decision is Decision.ALLOW:
            if r.consent != "given":
                r.consent = "given"
                self._event("consent_given")
        elif verdict.decision is Decision.REFUSE:
            if verdict.cause is Cause.CONSENT:
                r.consent = "denied"
                self._event("consent_denied", reason=verdict.reason)
            else:
                self._event("cancelled", reason=verdict.reason)
        self._save()

    async def _transfer(self) -> None:
        stages = [Stage("installing", "installed", self._install_one)]
        if self._activation == "as-ready" and await self._activation_allowed_now():
            # Nothing commits before every ECU is healthy, so switching one ECU while
            # another still downloads keeps the campaign all-or-nothing, and shorter.
            stages.append(Stage("activating", "trial", lambda p, j: p.activate(j)))
        result = await self._stages(stages)
        if result.ok:
            self._move(S.PROCESSING, "checking every ECU holds its new image")
        else:
            self._start_rollback(result)

    async def _activation_allowed_now(self) -> bool:
        return (await self._gates.ask(Gate.ACTIVATE)).decision is Decision.ALLOW

    async def _install_one(self, port: EcuPort, job: EcuJob) -> StepResult:
        return await port.install(job, self._progress_of(job.serial))

    def _progress_of(self, serial: str) -> ProgressFn:
        def progress(done: int, total: int) -> None:
            ecu = self._record.ecus[serial]
            ecu.bytes_done, ecu.bytes_total = done, total
            self._hooks.publish(self._record)

        return progress

    async def _processing(self) -> None:
        await self._check_standing(
            {EcuStanding.INSTALLED, EcuStanding.TRIAL, EcuStanding.NEW},
            S.ACTIVATING,
            "switching ECUs to their new images",
        )

    async def _activate(self) -> None:
        if not await self._gate(Gate.ACTIVATE):
            return
        result = await self._phase("activating", "trial", lambda p, j: p.activate(j))
        if result.ok:
            self._move(S.VERIFYING, "checking every ECU runs its new image")
        else:
            self._start_rollback(result)

    async def _verifying(self) -> None:
        if self._jobs((Tier.TBOX,)):
            next_state, detail = S.UPDATING_TBOX, "every other ECU runs its new image: the TBox"
        else:
            next_state, detail = S.COMMITTING, "all ECUs run their new images: committing"
        await self._check_standing({EcuStanding.TRIAL, EcuStanding.NEW}, next_state, detail)

    # -- the TBox itself, last (docs/master.md §2, "The TBox itself") --------------------

    async def _update_tbox(self) -> None:
        """Boot script written and switched, then the rootfs slot written and primed."""
        result = await self._stages(
            [
                Stage("installing", "installed", self._install_one),
                Stage("activating", "trial", lambda p, j: p.activate(j)),
            ]
        )
        if result.ok:
            self._move(S.TBOX_TRIAL, "rebooting the TBox into its new slot")
        else:
            self._start_rollback(result)

    async def _tbox_trial(self) -> None:
        """Reboot into the new slot, or decide where the reboot left us (ON_RESTART ASSESS)."""
        found = self._self_job()
        assert found is not None  # _check_plan: a TBox campaign always updates the rootfs
        job, port = found
        serial = job.serial
        try:
            boot = await port.boot(job)
        except Exception as exc:  # slot layer unreadable: decide at the next poll
            self._record.detail = f"cannot tell where the TBox booted, will retry: {exc}"
            self._save()
            log.error("campaign %s: %s", self._record.campaign, self._record.detail)
            return
        standing = boot.standing
        if standing is EcuStanding.INSTALLED:  # primed, not rebooted yet (or killed before)
            if self._gates.aborting:
                self._record.error = self._gates.aborting
                self._move(S.ROLLING_BACK, self._gates.aborting)
            elif await self._gate(Gate.ACTIVATE):
                self._ecu(serial, "rebooting", "into its new slot")
                await self._reboot("into the new TBox slot")
        elif standing is EcuStanding.TRIAL:  # the new Master, after the reboot
            await self._judge_tbox(job, port)
        elif standing is EcuStanding.NEW:
            self._move(S.COMMITTING, "the TBox's new slot is committed: committing the rest")
        elif standing is EcuStanding.FAILED:  # rejected, the reboot back did not happen
            await self._reboot("back to the old TBox slot")
        else:  # the old Master: the new slot was rejected, or the bootloader fell back
            why = self._record.error or f"{serial}: {boot.reason or 'its new image did not boot'}"
            self._record.error = why
            self._ecu(serial, "failed", why)
            self._event("install_failed", reason=why)
            self._move(S.ROLLING_BACK, why)

    async def _judge_tbox(self, job: EcuJob, port: SelfUpdatePort) -> None:
        """On the new slot: health check, then commit (forward) or reject and reboot back."""
        update = self._self_update
        assert update is not None  # _check_plan
        self._ecu(job.serial, "checking", "health check of the new TBox image")
        checks = list(update.checks)
        if update.ecus_answer and self._jobs((Tier.VEHICLE,)):
            checks.append(HealthCheck("ECUs", self._vehicle_on_trial))
        healthy, why = await assess(
            checks,
            clock=self._hooks.clock,
            sleep=self._hooks.sleep,
            timeout_s=update.timeout_s,
            interval_s=update.interval_s,
            stopped=lambda: self._gates.aborting,
        )
        if healthy:
            self._ecu(job.serial, "trial", why)
            self._move(S.COMMITTING, "the TBox runs its new image and is healthy: committing")
            return
        # Journaled before the slot is marked bad: the old Master reports this reason.
        stopped = self._gates.aborting
        self._record.error = (
            f"{job.serial}: {stopped}"
            if stopped
            else f"{job.serial}: the new TBox image failed its health check: {why}"
        )
        self._ecu(job.serial, "rejected", why)
        log.error("campaign %s: %s", self._record.campaign, self._record.error)
        await port.reject(job, why)
        await self._reboot("back to the old TBox slot")

    async def _vehicle_on_trial(self) -> tuple[bool, str]:
        """Every other ECU of the campaign answers the new TBox and runs its new image."""
        for job in self._jobs((Tier.VEHICLE,)):
            try:
                standing = await self._ports[job.serial].standing(job)
            except Exception as exc:
                return False, f"{job.serial} does not answer: {_one_line(exc)}"
            if standing not in (EcuStanding.TRIAL, EcuStanding.NEW):
                return False, f"{job.serial} is {standing.value}"
        return True, "every ECU answers"

    async def _reboot(self, why: str) -> None:
        """Ask for the TBox's reboot once; this process then only waits to be stopped."""
        update = self._self_update
        assert update is not None
        if self._rebooting:
            return
        self._rebooting = True
        self._record.detail = f"rebooting {why}"
        self._save()
        log.warning("campaign %s: rebooting %s", self._record.campaign, why)
        try:
            await update.reboot()
        except Exception as exc:
            self._rebooting = False
            self._record.detail = f"reboot {why} failed, trying again at the next poll: {exc}"
            self._save()
            log.error("campaign %s: %s", self._record.campaign, self._record.detail)

    def _self_job(self) -> tuple[EcuJob, SelfUpdatePort] | None:
        """The campaign's job for the TBox's rootfs and its port (None: not in the campaign)."""
        for job in self._jobs((Tier.TBOX,)):
            if self._specs[job.serial].kind is EcuKind.SELF:
                port = self._ports[job.serial]
                assert hasattr(port, "boot"), f"{job.serial}: not a self-update port"
                return job, port  # type: ignore[return-value]
        return None

    async def _tbox_left_on_trial(self) -> bool:
        """A rollback that finds the TBox on its new slot: reject it and reboot, the old
        Master then rolls every ECU back. True when this process must stop here."""
        found = self._self_job()
        if found is None:
            return False
        job, port = found
        try:
            boot = await port.boot(job)
        except Exception as exc:
            log.warning("cannot tell where the TBox booted (%s): rolling back the rest", exc)
            return False
        if boot.standing is EcuStanding.TRIAL:
            self._ecu(job.serial, "rejected", self._record.error)
            await port.reject(job, self._record.error or "the campaign rolls back")
        elif boot.standing is not EcuStanding.FAILED:
            return False
        await self._reboot("back to the old TBox slot to roll back")
        return True

    async def _check_standing(
        self, good: set[EcuStanding], next_state: CampaignState, detail: str
    ) -> None:
        problems = []
        for job in self._jobs(SCOPE[self.state]):
            try:
                standing = await self._ports[job.serial].standing(job)
            except Exception as exc:  # an ECU that cannot answer is not ready
                problems.append(f"{job.serial}: {_one_line(exc)}")
                continue
            if standing not in good:
                problems.append(f"{job.serial} is {standing.value}")
        if problems:
            self._record.error = "; ".join(problems)
            self._move(S.ROLLING_BACK, self._record.error)
        else:
            self._move(next_state, detail)

    async def _commit(self) -> None:
        for pause in (*self._hooks.retry_s, None):
            result = await self._phase("committing", "committed", lambda p, j: p.commit(j))
            if result.ok:
                for ecu in self._record.ecus.values():
                    ecu.outcome = EcuOutcome.UPDATED
                await self._diagnose_after(clear=self._clear_new_dtcs)
                self._finish(S.DONE, "updated", "every ECU runs and committed its new image")
                return
            if pause is None:
                why = "; ".join(_one_line(e) for e in result.failures.values())
                self._record.detail = f"commit incomplete, will retry: {why}"
                self._save()
                return
            await self._hooks.sleep(pause)

    def _start_rollback(self, result: PhaseResult) -> None:
        why = "; ".join(_describe(s, e) for s, e in result.failures.items())
        self._record.error = why
        self._event("install_failed", reason=why)
        self._move(S.ROLLING_BACK, why)

    async def _roll_back(self) -> None:
        if await self._tbox_left_on_trial():
            return  # the old Master, on the old slot, rolls every ECU back
        failures: dict[str, BaseException] = {}
        for pause in (*self._hooks.retry_s, None):
            result = await self._phase(
                "rolling-back", "rolled-back", lambda p, j: p.rollback(j), reverse=True
            )
            failures = result.failures
            if not failures or pause is None:
                break
            await self._hooks.sleep(pause)
        for serial, ecu in self._record.ecus.items():
            if serial in failures:
                ecu.outcome = EcuOutcome.FAILED
                ecu.detail = _one_line(failures[serial])
            elif ecu.step == "pending":
                ecu.outcome = EcuOutcome.UNCHANGED
            else:
                ecu.outcome = EcuOutcome.ROLLED_BACK
        if failures:
            stuck = ", ".join(sorted(failures))
            self._record.error += f"; could not roll back {stuck}"
        self._event("rolled_back", reason=self._record.error)
        await self._diagnose_after(clear=False)
        self._finish(S.FAILED, "rolled-back", "every ECU is back on its old image")

    # -- UDS diagnostics around the campaign (docs/uds.md §5) ---------------------------

    async def _diagnose_before(self) -> None:
        """Versions and DTCs of every UDS ECU, journaled with the move to transferring."""
        if not self._diagnostics:
            return
        before = await take_snapshot(self._diagnostics.values(), self._dtc_mask)
        self._record.diagnostics = {"before": before.to_dict()}

    async def _diagnose_after(self, *, clear: bool) -> None:
        """Read again, put the DTCs that appeared into the report, clear them if told."""
        saved = self._record.diagnostics.get("before")
        if not self._diagnostics or not saved:
            return
        after = await take_snapshot(self._diagnostics.values(), self._dtc_mask)
        change = diff(Snapshot.from_dict(saved), after)
        found = report(change)
        if change.has_new_dtcs:
            log.warning("campaign %s: %s", self._record.campaign, summary(change))
            if clear:
                found["cleared"] = await clear_new_dtcs(self._diagnostics, change)
            self._event("dtc_report", **found)
        self._record.diagnostics.update(after=after.to_dict(), report=found)
        self._save()

    def _fail_untouched(self, why: str) -> None:
        """A failure before any ECU was touched: nothing to undo."""
        self._record.error = why
        for ecu in self._record.ecus.values():
            ecu.outcome = EcuOutcome.UNCHANGED
        self._event("install_failed", reason=why)
        self._finish(S.FAILED, "refused", f"refused, no ECU was touched: {why}")

    def _finish(self, state: CampaignState, outcome: str, detail: str) -> None:
        self._gates.reset()
        self._record.blocked_by = ""
        self._record.last_report = self._record.report(outcome)
        self._move(state, detail)
        self._event("campaign_report", report=self._record.last_report)
        asyncio.get_running_loop().create_task(self._final_manifest())

    async def _final_manifest(self) -> None:
        """The signed manifest, not an event, tells the cloud what every ECU runs now."""
        try:
            await self._cloud.report_manifest()
        except Exception as exc:
            # Offline (a bundle installed without coverage): the next poll reports first.
            self._reported = False
            log.warning("could not report the final manifest (next poll will): %s", exc)

    # -- phases over ECUs -----------------------------------------------------------

    def _require_plan(self) -> VerifiedCampaign:
        if self._plan is None:
            raise CampaignRefused("the verified plan is missing from the journal")
        return self._plan

    def _jobs(self, tiers: Sequence[Tier] = (Tier.VEHICLE, Tier.TBOX)) -> list[EcuJob]:
        """The campaign's ECU jobs of ``tiers``."""
        plan = self._require_plan()
        return [
            EcuJob(
                serial=serial,
                new=image,
                previous=plan.previous.get(serial),
                delta=plan.deltas.get(serial),
                bundle=plan.bundle,
                bundle_url=plan.bundle_url,
            )
            for serial, image in plan.targets.items()
            if self._specs[serial].kind.tier in tiers
        ]

    async def _phase(
        self, doing: str, done: str, step: StepFn, *, reverse: bool = False
    ) -> PhaseResult:
        return await self._stages([Stage(doing, done, step)], reverse=reverse)

    async def _stages(self, stages: Sequence[Stage], *, reverse: bool = False) -> PhaseResult:
        """Run ``stages`` one after the other on each ECU, the ECUs under the ordering rules,
        tier after tier as ``states.SCOPE`` says for the current state."""
        result = PhaseResult()
        for tier in SCOPE[self.state]:
            jobs = {job.serial: job for job in self._jobs((tier,))}

            async def operation(spec: EcuSpec, jobs: dict[str, EcuJob] = jobs) -> None:
                for stage in stages:
                    await self._one_stage(stage, spec, jobs[spec.serial])

            found = await run_phase([self._specs[s] for s in jobs], operation, reverse=reverse)
            result.outcomes.update(found.outcomes)
            if not found.ok and not reverse:
                break  # a forward phase stops at the first failure
        return result

    def _gate_of(self, stage: Stage, spec: EcuSpec) -> Gate | None:
        """The gate an ECU waits at before ``stage`` (None: no gate, nothing to wait for)."""
        if stage.doing == "installing" and spec.kind.is_uds:
            return Gate.FLASH  # the ECU is out of service while it is flashed
        if stage.doing == "activating" and spec.kind is EcuKind.SUB:
            return Gate.ACTIVATE  # the Sub reboots
        if stage.doing == "rolling-back" and self._record.ecus[spec.serial].step != "pending":
            return Gate.RESTORE
        return None

    async def _install_unless_fell_back(self, port: EcuPort, job: EcuJob) -> StepResult:
        """Install again after a restart, unless the ECU already went through its switch.

        A Sub journaled as switched (:attr:`EcuRecord.switched`) that now stands on its old image
        came back from its trial boot — its bootloader fell back, or it rolled itself
        back. Installing again would only repeat the failed trial (and, where the Master
        shares the board, reboot it into the same failure): the campaign rolls back.
        """
        standing = await port.standing(job)
        if standing in (EcuStanding.OLD, EcuStanding.FAILED):
            raise EcuFailed(
                job.serial,
                f"fell back to its old image after the trial boot of {job.new.target}",
            )
        return await port.install(job, self._progress_of(job.serial))

    async def _one_stage(self, stage: Stage, spec: EcuSpec, job: EcuJob) -> None:
        """Wait at the ECU's gate, run the step watched, and again if it was stopped."""
        serial, clock = spec.serial, self._hooks.clock
        gate = self._gate_of(stage, spec)
        forward = stage.doing not in ("committing", "rolling-back")
        switched = (
            stage.doing == "installing"
            and spec.kind is EcuKind.SUB
            and self._record.ecus[serial].switched
        )
        while True:
            if gate is not None:
                verdict = await self._gates.hold(gate, lambda v: self._waiting(gate, v, serial))
                self._passed(verdict)
                if verdict.decision is Decision.REFUSE:
                    raise CampaignRefused(
                        f"{serial}: refused before {gate.value}: {verdict.reason}"
                    )
            elif forward and self._gates.aborting:
                raise CampaignRefused(f"{serial}: {self._gates.aborting}")
            started = clock()
            if stage.doing == "activating":
                self._ecu(serial, stage.doing, switched=True)
            else:
                self._ecu(serial, stage.doing)
            stepper: StepFn = self._install_unless_fell_back if switched else stage.step
            step = stepper(self._ports[serial], job)
            try:
                if forward:
                    outcome = await self._gates.run_watched(
                        gate, step, interrupt=self._interrupt and gate is Gate.FLASH
                    )
                else:
                    outcome = await step
            except Exception as exc:
                self._record.ecus[serial].seconds += clock() - started
                self._ecu(serial, "failed", _describe(serial, exc))
                raise
            self._record.ecus[serial].seconds += clock() - started
            if isinstance(outcome, Interrupted):
                why = outcome.verdict.reason
                if outcome.verdict.decision is Decision.REFUSE:
                    self._ecu(serial, "failed", f"stopped: {why}")
                    raise CampaignRefused(f"{serial}: stopped: {why}")
                self._ecu(serial, "waiting", f"stopped, will run again: {why}")
                continue
            self._ecu(serial, stage.done, outcome.detail)
            return


def _transport(spec: EcuSpec) -> str:
    """How the ECU is reached, for the report: ``doip via ECU-ADAS-0001`` behind a Sub."""
    return TRANSPORTS[spec.kind] + (f" via {spec.behind}" if spec.behind else "")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _describe(serial: str, exc: BaseException) -> str:
    line = _one_line(exc)
    return line if isinstance(exc, EcuFailed) or line.startswith(serial) else f"{serial}: {line}"


def _log_background_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("campaign stopped unexpectedly: %s", task.exception())


def _log_event_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("event not delivered: %s", task.exception())
