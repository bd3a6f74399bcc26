"""Background delta generation: queued jobs run ``redstone-delta make`` in a child process.

A child process (not a thread) because making a delta is CPU- and memory-heavy
and must not stall or crash the API; a job interrupted by a restart is simply
claimed again (``running`` jobs older than the lease go back to the queue).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from redstone_agent.errors import RedstoneError
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.models import DeltaJob, Package
from redstone_cloud.db.types import utcnow
from redstone_cloud.services import audit
from redstone_cloud.settings import Settings
from redstone_cloud.storage.base import BlobStore

log = logging.getLogger(__name__)

JOB_STATES = ("pending", "running", "done", "skipped", "failed")
LEASE = dt.timedelta(hours=2)
MIN_SAVING = Settings.delta_min_saving
"""The share of its full image a delta must save to be kept (the setting's default)."""
DELTA_MAKE = [sys.executable, "-m", "redstone_agent.cli.delta", "make"]


def list_jobs(session: Session) -> list[dict[str, object]]:
    """Every job with its targets, state, reason and sizes (what ``deltas list`` shows);
    a running job also says for how long (``running_s``: since a worker claimed it).
    One statement, however many jobs and packages."""
    source, target, delta = aliased(Package), aliased(Package), aliased(Package)
    rows = session.execute(
        select(DeltaJob, source.target, target.target, target.length, delta.target, delta.length)
        .join(source, DeltaJob.from_package_id == source.id)
        .join(target, DeltaJob.to_package_id == target.id)
        .outerjoin(delta, DeltaJob.delta_package_id == delta.id)
        .order_by(DeltaJob.id)
    )
    now = utcnow()
    return [
        {
            "id": job.id,
            "from_target": from_target,
            "to_target": to_target,
            "state": job.state,
            "delta_target": delta_target,
            "full_length": full_length,
            "delta_length": delta_length,
            "error": job.error,
            "running_s": (
                round((now - job.finished_at).total_seconds())
                if job.state == "running" and job.finished_at is not None
                else None
            ),
        }
        for job, from_target, to_target, full_length, delta_target, delta_length in rows
    ]


def claim(session: Session) -> DeltaJob | None:
    """Take the oldest pending (or abandoned) job; safe with several workers."""
    stale = utcnow() - LEASE
    for job in session.scalars(
        select(DeltaJob)
        .where(
            or_(
                DeltaJob.state == "pending",
                (DeltaJob.state == "running") & (DeltaJob.finished_at < stale),
            )
        )
        .order_by(DeltaJob.id)
        .limit(5)
    ):
        taken = session.execute(
            update(DeltaJob)
            .where(DeltaJob.id == job.id, DeltaJob.state == job.state)
            .values(state="running", finished_at=utcnow())
        )
        if getattr(taken, "rowcount", 0) == 1:
            return job
    return None


def _materialise(store: BlobStore, key: str, path: Path) -> None:
    with path.open("wb") as out:
        for chunk in store.read(key):
            out.write(chunk)


def _make(old: Path, new: Path, out: Path, timeout_s: float) -> None:
    result = subprocess.run(
        [*DELTA_MAKE, str(old), str(new), str(out), "--jobs", "1"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "failed")


def run_job(
    sessions: sessionmaker[Session],
    store: BlobStore,
    job_id: int,
    timeout_s: float = 3600,
    min_saving: float = MIN_SAVING,
) -> str:
    """Make one delta and store it as a package of kind ``delta``; returns the job's state:
    ``done``, ``failed``, or ``skipped`` when the delta saves less than ``min_saving`` of
    the full image (vehicles then download the full image)."""
    with sessions() as session:
        job = session.get_one(DeltaJob, job_id)
        old = session.get_one(Package, job.from_package_id)
        new = session.get_one(Package, job.to_package_id)
    work = Path(tempfile.mkdtemp(prefix="rs-delta-"))
    try:
        _materialise(store, old.storage_key, work / "old")
        _materialise(store, new.storage_key, work / "new")
        _make(work / "old", work / "new", work / "out", timeout_s)
        size = (work / "out").stat().st_size
        if size > new.length * (1 - min_saving):
            reason = (
                f"the delta ({size} B) is not {min_saving:.0%} smaller than the full image "
                f"({new.length} B): vehicles download the full image"
            )
            log.info("delta job %d skipped: %s", job_id, reason)
            with transaction(sessions) as session:
                row = session.get_one(DeltaJob, job_id)
                row.state, row.error, row.finished_at = "skipped", reason, utcnow()
            return "skipped"
        version = f"{new.version}-from-{old.version}"
        with (work / "out").open("rb") as source:
            blob = store.put(
                f"deltas/{new.name}/{version}", source, max_bytes=new.length * 2 + 2**20
            )
        with transaction(sessions) as session:
            delta = Package(
                name=new.name,
                version=version,
                kind="delta",
                target=f"{new.target}.from-{old.sha256[:16]}.rsdelta",
                hardware_ids=new.hardware_ids,
                release_counter=new.release_counter,
                supplier=new.supplier,
                length=blob.length,
                sha256=blob.sha256,
                storage_key=blob.key,
                base_package_id=old.id,
            )
            session.add(delta)
            session.flush()
            row = session.get_one(DeltaJob, job_id)
            row.state, row.delta_package_id, row.finished_at = "done", delta.id, utcnow()
            audit.record(
                session, "delta-worker", "delta.made", "package", delta.target, length=blob.length
            )
        return "done"
    except (OSError, RuntimeError, RedstoneError, subprocess.TimeoutExpired) as exc:
        log.warning("delta job %d failed: %s", job_id, exc)
        with transaction(sessions) as session:
            row = session.get_one(DeltaJob, job_id)
            row.state, row.error, row.finished_at = "failed", str(exc)[:2000], utcnow()
        return "failed"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_pending(
    sessions: sessionmaker[Session],
    store: BlobStore,
    *,
    workers: int = 1,
    min_saving: float = MIN_SAVING,
    on_finish: Callable[[int, str], None] | None = None,
) -> list[tuple[int, str]]:
    """Work the queue until it is empty with ``workers`` jobs at a time (each a child
    process of one core and its own memory); returns (job id, final state) pairs in
    the order the jobs finished. ``on_finish(job id, state)`` hears of each as it ends
    (from a worker thread)."""
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def work() -> None:
        while True:
            with transaction(sessions) as session:
                job = claim(session)
                job_id = job.id if job else None
            if job_id is None:
                return
            state = run_job(sessions, store, job_id, min_saving=min_saving)
            with lock:
                results.append((job_id, state))
                if on_finish is not None:
                    on_finish(job_id, state)

    threads = [threading.Thread(target=work, name=f"delta-{n}") for n in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class DeltaWorker:
    """A daemon thread of ``serve`` that works the queue every ``interval_s`` seconds."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: BlobStore,
        interval_s: float,
        *,
        workers: int = 1,
        min_saving: float = MIN_SAVING,
    ) -> None:
        self._sessions, self._store, self._interval = sessions, store, interval_s
        self._workers, self._min_saving = workers, min_saving
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="delta-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                run_pending(
                    self._sessions, self._store, workers=self._workers, min_saving=self._min_saving
                )
            except Exception:  # keep the worker alive; the job row records what failed
                log.exception("delta worker iteration failed")
