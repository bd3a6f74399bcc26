"""Benchmark the Master OTA (``redstone-master``) on the virtual vehicle.

Builds the virtual vehicle of ``redstone-vehicle`` (cloud, the TBox's Master,
two Subs with their own someipyd, a DoCAN and a DoIP ECU simulator; as root
every node in its own network namespace, so each ECU sits on a bus of its
own), starts the real ``redstone-master run`` and measures:

* ``start_to_ready_s`` — from just before exec of ``redstone-master run``
  (through ``ip netns exec``) to its sd_notify ``READY=1`` on a
  ``NOTIFY_SOCKET`` this script listens on; the median of several starts
  (all of them are in ``start_to_ready_samples_s``).
* ``parallel_ratio`` — one campaign moving all four ECUs 1.0.0 → 2.0.0, then
  one campaign per ECU moving only that ECU 2.0.0 → 3.0.0 ("alone"), all on
  the same running Master. Each campaign's time is taken from the Master's
  own log: the journaled transition to *syncing* up to the one to *done*
  (what the Master spends on it: manifest, verification, download, transfer,
  activation, commit — not the wait for its next poll). The ratio is the
  four-ECU campaign over the slowest single-ECU campaign. The four-ECU
  campaign runs first, so any first-campaign warm-up counts against it (the
  ratio errs high, never low). Phases are barriers (every ECU holds its new
  image before any activates: all-new or all-old), so the four-ECU campaign
  takes about the slowest transfer *plus* the slowest activation; the ratio
  measures that and any contention. ``campaign_wall_s`` / ``alone_wall_s`` are
  the same campaigns seen from here: check-now (SIGUSR1) to the report in
  ``status.json``.
* ``rss_campaign_mib`` — the Master's peak resident memory (``VmHWM`` at the
  end: its whole life, which includes all five campaigns); the highest
  ``VmRSS`` sampled every 0.1 s during the campaigns is beside it.
* ``rss_idle_mib`` / ``idle_cpu_pct`` — after the campaigns, the Master idle
  in *idle* state polling the cloud at the interval the server gives
  (``poll_interval_s``; 2 s in the virtual vehicle, so the window contains
  its polls): ``VmRSS`` at the end of the window, and utime + stime from
  ``/proc/<pid>/stat`` over the window as a percentage of one core
  (``idle_window_s``: 30 s, 10 s with ``--quick``). ``rss_fresh_idle_mib`` is
  the idle RSS right after start, before any campaign; ``rss_idle_anon_mib``
  the private (anonymous) part of ``rss_idle_mib``, the rest being mapped
  files (shared libraries and extension modules).

The Master runs from ``.venv-vehicle`` (made on first use, then cached): a
venv with only the vehicle's extras (``uds,someip,master``), as on a TBox
image — the development venv's cloud packages would add boto3 (imported by
securesystemslib when present) to its footprint.

``load_start`` / ``load_end`` are the 1-minute load averages before the
vehicle is built and after it is torn down; ``quiet`` is true when both are
at most half the CPU count (the figures are then not skewed by neighbours).

Usage: ``python tools/bench/campaign.py [--quick]`` (root: without network
namespaces the vehicle has no DoCAN ECU and the JSON says ``isolated:
false``). Progress goes to stderr; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from redstone_agent.vvehicle.netlab import Node, stop_process
from redstone_agent.vvehicle.plan import VERSIONS, EcuPlan
from redstone_agent.vvehicle.vehicle import VirtualVehicle

TARGETS = {
    "parallel_ratio": 1.15,
    "rss_campaign_mib": 60.0,
    "idle_cpu_pct": 1.0,
    "start_to_ready_s": 1.5,
}
CAMPAIGN_TIMEOUT_S = 300.0
SAMPLE_S = 0.1
SETTLED = {"succeeded", "failed", "cancelled"}
"""The cloud's terminal assignment states (``redstone_cloud.rollout.TERMINAL_STATES``)."""
SETTLE_S = 3.0
"""After READY or a campaign: long enough for recovery and one poll at the 2 s interval."""
TRANSITION = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ redstone_agent\.master\.engine: "
    r"campaign (?P<campaign>\S+): (?P<state>[a-z-]+)\b"
)
"""A journaled transition as the Master logs it (``log-format`` text, the default)."""


def log(message: str) -> None:
    print(f"[bench campaign] {message}", file=sys.stderr, flush=True)


# -- /proc ---------------------------------------------------------------------------------


def proc_status_mib(pid: int, key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of *pid* in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """utime + stime of *pid* (fields 14 and 15 of ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the Master process --------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
VEHICLE_VENV = ROOT / ".venv-vehicle"
VEHICLE_EXTRAS = "uds,someip,master"
"""What a TBox image installs: no cloud extra (boto3, FastAPI, SQLAlchemy never load)."""


def vehicle_master() -> str:
    """``redstone-master`` from a venv with only the vehicle's extras (made once, cached).

    The development venv also holds the cloud's packages, and securesystemslib
    imports boto3 whenever it is installed (~8 MiB the TBox never pays); the
    footprint figures must be what a vehicle image runs.
    """
    python = VEHICLE_VENV / "bin" / "python"
    stamp = VEHICLE_VENV / ".redstone-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not python.exists():
        log(f"creating {VEHICLE_VENV} (the vehicle's packages only)")
        subprocess.run([sys.executable, "-m", "venv", str(VEHICLE_VENV)], check=True)
    if not stamp.exists() or stamp.read_text().strip() != want:
        log(f"installing redstone-ota[{VEHICLE_EXTRAS}] into {VEHICLE_VENV}")
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-e",
                f"{ROOT}[{VEHICLE_EXTRAS}]",
            ],
            check=True,
        )
        stamp.write_text(want + "\n")
    return str(VEHICLE_VENV / "bin" / "redstone-master")


class Master:
    """``redstone-master run`` on the Master node, with a NOTIFY_SOCKET we drain.

    The daemon sends ``STATUS=`` on every transition, so the socket is read
    by a thread for as long as the daemon lives (a full datagram queue would
    block it, as a stuck service manager would).
    """

    def __init__(self, node: Node, config: Path, command: str) -> None:
        self.node = node
        self.config = config
        self.command = command
        self.notify_path = node.workdir / "bench-notify.sock"
        self.state_dir = node.workdir / "state"
        self.log_path = node.workdir / "master.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready = threading.Event()
        self._ready_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Start the daemon; return seconds from exec to READY=1."""
        self.notify_path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.notify_path))
        self._ready.clear()
        threading.Thread(target=self._drain, args=(self._sock,), daemon=True).start()
        argv = [self.command, "--config", str(self.config), "run"]
        started = time.monotonic()
        self.proc = self.node.spawn(
            argv, env={"NOTIFY_SOCKET": str(self.notify_path)}, log=self.log_path
        )
        if not self._ready.wait(30.0):
            raise SystemExit(f"redstone-master sent no READY=1 within 30 s (see {self.log_path})")
        pid_file = int((self.state_dir / "master.pid").read_text())
        if pid_file != self.proc.pid:  # ip netns exec must have exec'd, not forked
            raise SystemExit(f"master.pid {pid_file} is not the spawned pid {self.proc.pid}")
        return self._ready_at - started

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                message = sock.recv(4096).decode(errors="replace")
            except OSError:
                return
            if "READY=1" in message.split("\n") and not self._ready.is_set():
                self._ready_at = time.monotonic()
                self._ready.set()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def status(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def transitions(self, campaign: str) -> list[tuple[float, str]]:
        """(epoch seconds, state) of every logged transition of *campaign*."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = TRANSITION.match(line)
            if match and match["campaign"] == campaign:
                at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                found.append((at, match["state"]))
        return found


# -- campaigns -----------------------------------------------------------------------------


def run_campaign(
    vehicle: VirtualVehicle,
    master: Master,
    name: str,
    *,
    version: str,
    ecus: list[EcuPlan],
    rss_samples: list[float],
) -> dict[str, Any]:
    """Offer *ecus* → *version* as campaign *name*, make the Master poll, wait for its report."""
    body = vehicle.plan.campaign_json(name, version) | {
        "packages": [e.target(version) for e in ecus]
    }
    with vehicle.operator() as op:
        op.create_campaign(body)
        started = op.start_campaign(name)
    if started.get("skipped"):
        raise SystemExit(f"{name}: the cloud skipped the vehicle: {started['skipped']}")
    t0 = time.monotonic()
    os.kill(master.pid, signal.SIGUSR1)
    deadline = t0 + CAMPAIGN_TIMEOUT_S
    while True:
        if not master.alive():
            raise SystemExit(f"{name}: redstone-master exited (see {master.log_path})")
        rss_samples.append(proc_status_mib(master.pid, "VmRSS"))
        report = master.status().get("last_report")
        if isinstance(report, dict) and report.get("campaign") == name:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: no report within {CAMPAIGN_TIMEOUT_S:g} s")
        time.sleep(SAMPLE_S)
    wall = time.monotonic() - t0
    if report.get("outcome") != "updated":
        raise SystemExit(f"{name}: {report.get('outcome')}: {report.get('detail')}")
    steps = master.transitions(name)
    begin = next((at for at, state in steps if state == "syncing"), None)
    end = next((at for at, state in reversed(steps) if state == "done"), None)
    if begin is None or end is None:
        raise SystemExit(f"{name}: no syncing/done transition in {master.log_path}")
    wait_settled(vehicle, name)
    roles = {e.serial: e.role for e in vehicle.plan.ecus}
    per_ecu = {roles.get(r["serial"], r["serial"]): r["seconds"] for r in report["ecus"]}
    log(f"{name}: {end - begin:.2f} s in the Master ({wall:.2f} s from check-now); {per_ecu}")
    return {"seconds": end - begin, "wall_s": wall, "ecu_seconds": per_ecu}


def wait_settled(vehicle: VirtualVehicle, name: str, timeout: float = 60.0) -> None:
    """Until the cloud settled the vehicle's assignment (the Master's manifest after its
    report does that); before, the cloud refuses a new campaign for a busy vehicle."""
    deadline = time.monotonic() + timeout
    with vehicle.operator() as op:
        while True:
            states = {v["state"] for v in op.campaign_vehicles(name)}
            if states <= SETTLED:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the cloud did not settle it within {timeout:g} s")
            time.sleep(SAMPLE_S)


def check_versions(vehicle: VirtualVehicle, expected: str) -> None:
    """Every ECU really runs *expected* (read from the ECUs, not from the report)."""
    found = vehicle.versions()
    wrong = {
        e.role: found.get(e.serial)
        for e in vehicle.plan.updatable
        if found.get(e.serial) != expected
    }
    if wrong:
        raise SystemExit(f"after the campaigns these ECUs do not run {expected}: {wrong}")


# -- main ----------------------------------------------------------------------------------


def measure(workdir: Path, quick: bool) -> dict[str, Any]:
    starts = 3 if quick else 5
    idle_window = 10.0 if quick else 30.0
    with VirtualVehicle(workdir, progress=lambda line: log(f"vehicle: {line}")) as vehicle:
        master = Master(vehicle.master, vehicle.master_config, vehicle_master())
        ecus = vehicle.plan.updatable
        log(f"{len(ecus)} ECUs: " + ", ".join(f"{e.role} ({e.transport})" for e in ecus))

        ready: list[float] = []
        for index in range(starts):
            ready.append(master.start())
            log(f"start {index + 1}/{starts}: READY after {ready[-1]:.3f} s")
            time.sleep(SETTLE_S)
            if index < starts - 1:
                master.stop()
        rss_fresh = proc_status_mib(master.pid, "VmRSS")
        log(f"fresh idle RSS {rss_fresh:.1f} MiB")

        samples: list[float] = []
        _factory, new, newer = VERSIONS
        vehicle.release(new)
        together = run_campaign(
            vehicle, master, "bench-all", version=new, ecus=ecus, rss_samples=samples
        )
        vehicle.release(newer)
        alone = {
            e.role: run_campaign(
                vehicle, master, f"bench-{e.role}", version=newer, ecus=[e], rss_samples=samples
            )
            for e in ecus
        }
        check_versions(vehicle, newer)

        time.sleep(SETTLE_S)
        cpu_before, t_before = cpu_seconds(master.pid), time.monotonic()
        log(f"idle window: {idle_window:g} s")
        time.sleep(idle_window)
        cpu_used, window = cpu_seconds(master.pid) - cpu_before, time.monotonic() - t_before
        rss_idle = proc_status_mib(master.pid, "VmRSS")
        rss_anon = proc_status_mib(master.pid, "RssAnon")
        rss_peak = proc_status_mib(master.pid, "VmHWM")
        interval = poll_interval(vehicle)
        master.stop()

    slowest = max(alone, key=lambda role: alone[role]["seconds"])
    figures: dict[str, Any] = {
        "parallel_ratio": round(together["seconds"] / alone[slowest]["seconds"], 3),
        "rss_idle_mib": round(rss_idle, 1),
        "rss_campaign_mib": round(rss_peak, 1),
        "idle_cpu_pct": round(100.0 * cpu_used / window, 3),
        "start_to_ready_s": round(statistics.median(ready), 3),
        "campaign_s": round(together["seconds"], 2),
        "campaign_wall_s": round(together["wall_s"], 2),
        "campaign_ecu_seconds": together["ecu_seconds"],
        "alone_s": {role: round(a["seconds"], 2) for role, a in alone.items()},
        "alone_wall_s": {role: round(a["wall_s"], 2) for role, a in alone.items()},
        "slowest_alone": slowest,
        "rss_campaign_sampled_mib": round(max(samples), 1),
        "rss_fresh_idle_mib": round(rss_fresh, 1),
        "rss_idle_anon_mib": round(rss_anon, 1),
        "idle_window_s": round(window, 1),
        "idle_cpu_s": round(cpu_used, 3),
        "poll_interval_s": interval,
        "start_to_ready_samples_s": [round(r, 3) for r in ready],
        "ecus": {e.role: e.transport for e in ecus},
        "isolated": vehicle.isolated,
    }
    return figures


def poll_interval(vehicle: VirtualVehicle) -> float:
    """The poll interval the vehicle's cloud gives its devices (its ``cloud.toml``)."""
    assert vehicle.cloud is not None
    config = tomllib.loads(vehicle.cloud.config.read_text())
    return float(config["cloud"]["poll_interval_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="10 s idle window, 3 starts (CI, development)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="build the vehicle here and keep it (logs; default: a temp dir)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        log("not root: no network namespaces, so no DoCAN ECU (three ECUs, not four)")
    cpus = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = measure(args.workdir.resolve(), args.quick)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
            figures = measure(Path(tmp), args.quick)
    load_end = os.getloadavg()[0]
    figures |= {
        "quick": args.quick,
        "load_start": round(load_start, 2),
        "load_end": round(load_end, 2),
        "cpus": cpus,
        "quiet": max(load_start, load_end) <= cpus / 2,
        "targets": TARGETS,
        "targets_met": {
            "parallel_ratio": figures["parallel_ratio"] <= TARGETS["parallel_ratio"],
            "rss_campaign_mib": figures["rss_campaign_mib"] <= TARGETS["rss_campaign_mib"],
            "idle_cpu_pct": figures["idle_cpu_pct"] < TARGETS["idle_cpu_pct"],
            "start_to_ready_s": figures["start_to_ready_s"] < TARGETS["start_to_ready_s"],
        },
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
