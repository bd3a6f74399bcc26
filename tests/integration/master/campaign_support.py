"""Plumbing of the Master's campaign suite (``test_campaign*.py``): one virtual vehicle per
module, a fresh release per scenario, and the checks every scenario ends with.

Running daemons' journals are read with :func:`peek_journal`, never
``Journal.load`` (which sweeps the temporaries of a write in flight).

The truth is what the ECUs run, read from the ECUs themselves: a Sub's booted
slot and the image its journal names as committed, a UDS ECU's version DID
(:meth:`VirtualVehicle.versions`). The Master's report and the cloud are
checked against that truth, never instead of it. Deadlines only guard against
a hang; no assertion is about how long something took.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from redstone_agent.master.daemon import KILL_IN_ENV
from redstone_agent.vvehicle.errors import VehicleError
from redstone_agent.vvehicle.journals import peek_journal
from redstone_agent.vvehicle.plan import RELEASES, EcuPlan
from redstone_agent.vvehicle.subs import SubNode
from redstone_agent.vvehicle.tbox import TBox
from redstone_agent.vvehicle.vehicle import VirtualVehicle
from tests.support import require_tool

T = TypeVar("T")

CAMPAIGN_TIMEOUT_S = 240.0
"""Failure guard for one campaign (they take seconds)."""
CLOUD_TIMEOUT_S = 60.0
"""Failure guard for the cloud to settle an assignment after the Master reported."""
POLL_S = 0.05

SUB_STATES_AT_REST = frozenset({"IDLE", "COMMITTED", "ROLLED_BACK", "FAILED"})
"""A Sub's journaled states in which nothing is under way."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Call *probe* until it returns something other than None (or fail, naming *what*).
    Says when it saw it (shown with a failure's captured output)."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        found = probe()
        if found is not None:
            print(
                f"{time.strftime('%H:%M:%S')} {what}: {found} (+{time.monotonic() - started:.1f} s)"
            )
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)


def _at_rest(sub: SubNode) -> Callable[[], str | None]:
    """A probe: the Sub's journaled state once nothing is under way, else None."""

    def probe() -> str | None:
        state = sub.state()
        return state if state in SUB_STATES_AT_REST else None

    return probe


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Car:
    """The module's vehicle and what it runs now: every scenario starts from ``current``."""

    vehicle: VirtualVehicle
    current: str = RELEASES[0]
    released: int = 0
    """Index in RELEASES of the newest release (releases only move forward)."""

    @property
    def tbox(self) -> TBox:
        return self.vehicle.tbox

    @property
    def updatable(self) -> list[EcuPlan]:
        return self.vehicle.plan.updatable

    def next_version(self) -> str:
        self.released += 1
        return RELEASES[self.released]

    def offer(self, *, deltas: bool = True) -> tuple[str, str]:
        """Release the next version and start its campaign: (campaign, version)."""
        version = self.next_version()
        return self.vehicle.offer(version, deltas=deltas), version

    def run(self, campaign: str) -> dict[str, Any]:
        """Let the (running or restarted) Master finish *campaign*; its report."""
        return self.tbox.run_campaign(campaign, timeout=CAMPAIGN_TIMEOUT_S)

    # -- the truth: what every ECU runs ------------------------------------------------

    def runs(self) -> dict[str, str]:
        """serial → version, read from each ECU once every Sub is at rest; a Sub whose
        committed image is not the one it booted is reported as such (never a version)."""
        states = {
            sub.ecu.serial: wait_for(f"{sub.ecu.role} at rest", _at_rest(sub), CAMPAIGN_TIMEOUT_S)
            for sub in self.vehicle.subs
        }
        found = self.vehicle.versions()
        for sub in self.vehicle.subs:
            booted = found[sub.ecu.serial]
            if sub.committed_sha256() != sha256_of(self.vehicle.image_file(sub.ecu, booted)):
                found[sub.ecu.serial] = (
                    f"{booted} booted but {sub.committed_target()} committed"
                    f" ({states[sub.ecu.serial]})"
                )
        return found

    def assert_all(self, version: str) -> None:
        """Every ECU runs *version* (booted and committed); the next scenario starts there."""
        found = self.runs()
        wanted = {e.serial: version for e in self.updatable}
        assert found == wanted, f"not every ECU runs {version}: {found}"
        self.current = version

    def assert_all_new_or_old(self, old: str, new: str) -> str:
        """The vehicle is all-*old* or all-*new*, never mixed; which one it is."""
        found = self.runs()
        versions = set(found.values())
        assert versions in ({old}, {new}), f"mixed vehicle (old {old}, new {new}): {found}"
        self.current = versions.pop()
        return self.current

    # -- the Master's report --------------------------------------------------------

    def assert_rows(
        self, report: dict[str, Any], old: str, new: str, *outcomes: str
    ) -> dict[str, dict[str, Any]]:
        """One row per ECU: old/new image, an outcome of *outcomes*, its transport, bytes
        counted. Returns the rows by serial."""
        rows = {row["serial"]: row for row in report["ecus"]}
        assert set(rows) == {e.serial for e in self.updatable}, report
        for ecu in self.updatable:
            row = rows[ecu.serial]
            assert (row["old"], row["new"], row["transport"].split(" via ")[0]) == (
                ecu.target(old),
                ecu.target(new),
                ecu.transport,
            ), row
            assert row["outcome"] in outcomes, row
            assert row["bytes_downloaded"] >= 0 and row["bytes_saved"] >= 0, row
        return rows

    # -- the cloud ------------------------------------------------------------------

    def assignment(self, campaign: str) -> dict[str, Any]:
        with self.vehicle.operator() as op:
            (row,) = op.campaign_vehicles(campaign)
        return row

    def cloud_inventory(self) -> dict[str, str]:
        """serial → the sha256 the cloud's inventory says the ECU runs."""
        with self.vehicle.operator() as op:
            vehicle = op.call("GET", f"/api/v1/vehicles/{self.vehicle.plan.vin}")
        return {e["serial"]: e["installed_sha256"] or "" for e in vehicle["ecus"]}

    def reported_sha256(self, ecu: EcuPlan, version: str) -> set[str]:
        """The sha256s the Master's manifest may report for *ecu* running *version*. A UDS
        ECU on the factory image, never flashed by the Master, is reported with an unknown
        (empty) hash: the Master knows only what it flashed (``ecu_uds.UdsPort.manifest``)."""
        known = sha256_of(self.vehicle.image_file(ecu, version))
        return {known, ""} if ecu.kind.is_uds and version == RELEASES[0] else {known}

    def assert_cloud_learns(self, campaign: str, version: str, assignment: str) -> None:
        """The cloud's inventory shows every ECU on *version* (from the signed manifest)
        and the vehicle's assignment reached *assignment*."""
        wanted = {e.serial: self.reported_sha256(e, version) for e in self.updatable}

        def settled() -> bool | None:
            inventory = self.cloud_inventory()
            same = all(inventory.get(s) in h for s, h in wanted.items())
            return True if same and self.assignment(campaign)["state"] == assignment else None

        try:
            wait_for(f"the cloud to learn {campaign}", settled, CLOUD_TIMEOUT_S)
        except AssertionError as exc:
            state = self.assignment(campaign)
            raise AssertionError(
                f"{exc}: assignment {state['state']} ({state['detail']}), inventory "
                f"{self.cloud_inventory()}, wanted {version}: {wanted}"
            ) from None

    # -- tampering with what the cloud serves -----------------------------------------

    @contextlib.contextmanager
    def tampered_image_metadata(self, name: str) -> Iterator[None]:
        """Alter the signed part of a published image-repository file in the cloud's
        database (so its signature no longer verifies); restore it afterwards."""
        assert self.vehicle.cloud is not None
        db = self.vehicle.cloud.data_dir / "cloud.db"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            (original,) = conn.execute(
                "SELECT body FROM repo_metadata WHERE name = ?", (name,)
            ).fetchone()
            document = json.loads(original)
            document["signed"]["expires"] = "2099-12-31T00:00:00Z"
            with conn:
                conn.execute(
                    "UPDATE repo_metadata SET body = ? WHERE name = ?",
                    (json.dumps(document).encode(), name),
                )
        try:
            yield
        finally:
            with contextlib.closing(sqlite3.connect(db)) as conn, conn:
                conn.execute("UPDATE repo_metadata SET body = ? WHERE name = ?", (original, name))

    # -- the Master's process ---------------------------------------------------------

    def journaled_state(self) -> str:
        """The campaign state the Master's journal holds (docs/master.md §3)."""
        saved = peek_journal(self.vehicle.master.workdir / "state" / "campaign.json")
        return str(saved.get("state", ""))

    def kill_master_in(self, state: str) -> int:
        """Restart the Master with ``REDSTONE_MASTER_KILL_IN=state``; wait until it killed
        itself there; return its exit status."""
        self.tbox.stop()
        self.tbox.start(env={KILL_IN_ENV: state})
        return self.tbox.wait_exit(CAMPAIGN_TIMEOUT_S)

    def cache_offsets(self) -> dict[str, int]:
        """Journaled durable offsets of the Master's partial downloads (name → bytes)."""
        partial = self.vehicle.master.workdir / "cache" / "partial"
        found: dict[str, int] = {}
        for path in partial.glob("*.offset"):
            offset = peek_journal(path).get("offset", 0)
            found[path.name] = offset if isinstance(offset, int) else 0
        return found

    def partials(self) -> list[Path]:
        """The Master's partial downloads that hold bytes."""
        partial = self.vehicle.master.workdir / "cache" / "partial"
        found = []
        for path in partial.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size > 0:
                    found.append(path)
        return found

    def ecu_journals(self) -> dict[str, object]:
        """Every ECU's own record of itself: each Sub's journal, each UDS ECU's version."""
        found: dict[str, object] = {
            sub.ecu.serial: peek_journal(sub.journal) for sub in self.vehicle.subs
        }
        found.update(self.vehicle.versions())
        return found

    def cloud_requests(self, path_part: str) -> list[tuple[str, int]]:
        """(request line, status) of every logged cloud request whose line holds *path_part*."""
        assert self.vehicle.cloud is not None
        found = []
        for line in self.vehicle.cloud.log.read_text(errors="replace").splitlines():
            if path_part in line and '"' in line:
                _, request, rest = line.split('"', 2)
                status = rest.split()[0] if rest.split() else ""
                if status.isdigit():
                    found.append((request, int(status)))
        return found

    def ranged_downloads(self) -> int:
        """Target downloads the cloud answered 206 Partial Content (i.e. asked with Range)."""
        return sum(status == 206 for _, status in self.cloud_requests("/api/v1/device/targets/"))

    # -- diagnosis ----------------------------------------------------------------------

    def diagnosis(self) -> str:
        """What CI shows of a failure: the Master's status, its own log lines (the UDS
        library's chatter left out), the Subs' last lines, and the Master's Python stacks
        if it still runs (a hang says where it waits)."""
        parts = []
        status = self.vehicle.master.workdir / "state" / "status.json"
        with contextlib.suppress(OSError):
            parts += ["--- master status.json ---", status.read_text()[-3000:]]
        parts += ["--- redstone-master log (its own lines, tail) ---", self._master_lines(60)]
        for sub in self.vehicle.subs:
            with contextlib.suppress(OSError):
                tail = sub.log.read_text(errors="replace").rstrip().splitlines()[-15:]
                parts += [f"--- {sub.ecu.role} redstone-sub log (tail) ---", *tail]
        parts += stacks(self.tbox)
        return "\n".join(parts)

    def _master_lines(self, lines: int) -> str:
        kept = [line for line in self.tbox.log_tail(5000).splitlines() if " redstone" in line]
        return "\n".join(kept[-lines:])

    @contextlib.contextmanager
    def diagnosed(self) -> Iterator[None]:
        """On any failure inside, print what happened (pytest shows it with the failure)."""
        try:
            yield
        except BaseException:
            print(self.diagnosis())
            raise


def stacks(tbox: TBox) -> list[str]:
    """``py-spy dump`` of the running Master (a dev dependency); nothing if it is not running."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if tbox.proc is None or tbox.proc.poll() is not None or not Path(spy).exists():
        return []
    try:
        dump = subprocess.run(
            [spy, "dump", "--pid", str(tbox.proc.pid)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ["--- py-spy dump timed out ---"]
    return ["--- redstone-master stacks (py-spy dump) ---", (dump.stdout + dump.stderr)[-6000:]]


def build_car(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Car]:
    """The module fixture's body: a namespaced virtual vehicle, torn down at the end."""
    if os.geteuid() != 0:
        pytest.skip("the campaign suite runs the vehicle in network namespaces (root)")
    for tool in ("ip", "tc", "fw_setenv", "fw_printenv"):
        require_tool(tool)
    workdir = tmp_path_factory.mktemp(name) / "vehicle"
    vehicle = VirtualVehicle(workdir, isolated=True)
    with vehicle:
        car = Car(vehicle)
        try:
            car.assert_all(RELEASES[0])
            car.tbox.start()  # polling from now on, as in a vehicle
        except (AssertionError, VehicleError):
            print(car.diagnosis())
            raise
        yield car
