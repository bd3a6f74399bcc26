"""The poll fast path's certificate lookup on SQLite and PostgreSQL: polls that arrive in
one turn of the event loop share one statement, and each still sees every revocation and
``poll_rev`` committed before it was asked."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

from sqlalchemy import update

from redstone_cloud.api.fastpoll import MAX_BATCH, LookupRow, PollBatcher, open_lookup
from redstone_cloud.backend import Backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.models import Vehicle
from redstone_cloud.services import pki
from tests.integration.cloud.fleet import add_model, add_vehicle, vin_of

UNKNOWN = "0" * 64


def register(backend: Backend, count: int) -> dict[str, tuple[str, str]]:
    """``count`` vehicles with a client certificate each: VIN -> (fingerprint, serial)."""
    certificates = {}
    with transaction(backend.sessions) as session:
        pki.create_ca(session, backend.settings.key_dir, "test", "root")
        add_model(session)
        for n in range(1, count + 1):
            row, _ = add_vehicle(session, backend.settings.key_dir, n)
            certificates[vin_of(n)] = (row.fingerprint, row.serial)
    return certificates


def test_concurrent_polls_share_one_statement_and_see_committed_changes(
    backend: Backend,
) -> None:
    certificates = register(backend, 3)
    fingerprints = [fp for fp, _ in certificates.values()]
    lookup = open_lookup(backend.engine)
    statements: list[list[str]] = []

    def counted(asked: Sequence[str]) -> dict[str, LookupRow]:
        statements.append(list(asked))
        return lookup(asked)

    batcher = PollBatcher(counted)

    async def poll_all(asked: list[str]) -> list[LookupRow | None]:
        return await asyncio.gather(*(batcher.get(fp) for fp in asked))

    asked = fingerprints * 5 + [UNKNOWN]
    rows = asyncio.run(poll_all(asked))
    assert statements == [sorted({*fingerprints, UNKNOWN})]
    assert rows[-1] is None
    by_fingerprint = dict(zip(asked, rows, strict=True))
    vehicle_ids = {row[0] for row in by_fingerprint.values() if row is not None}
    assert len(vehicle_ids) == 3
    for fingerprint in fingerprints:
        row = by_fingerprint[fingerprint]
        assert row is not None
        _, _, revoked_at, not_after = row
        assert revoked_at is None
        assert not_after.tzinfo is not None and not_after > dt.datetime.now(dt.UTC)

    # What a second batch is asked after a commit, it sees.
    revoked_fp, revoked_serial = certificates[vin_of(2)]
    moved_fp = certificates[vin_of(3)][0]
    moved_row = by_fingerprint[moved_fp]
    assert moved_row is not None
    with transaction(backend.sessions) as session:
        pki.revoke(session, "test", revoked_serial, "stolen")
        session.execute(
            update(Vehicle).where(Vehicle.id == moved_row[0]).values(poll_rev=Vehicle.poll_rev + 1)
        )
    revoked, moved = asyncio.run(poll_all([revoked_fp, moved_fp]))
    assert len(statements) == 2
    assert revoked is not None and revoked[2] is not None
    assert moved is not None and moved[1] == moved_row[1] + 1
    lookup.close()


def test_a_burst_larger_than_a_batch_is_split_and_every_poll_answered(
    backend: Backend,
) -> None:
    fingerprint = next(iter(register(backend, 1).values()))[0]
    lookup = open_lookup(backend.engine)
    sizes: list[int] = []

    def counted(asked: Sequence[str]) -> dict[str, LookupRow]:
        sizes.append(len(asked))
        return lookup(asked)

    batcher = PollBatcher(counted)
    asked = [fingerprint] + [f"{n:064x}" for n in range(1, MAX_BATCH + 10)]

    async def poll_all() -> list[LookupRow | None]:
        return await asyncio.gather(*(batcher.get(fp) for fp in asked))

    rows = asyncio.run(poll_all())
    assert sizes == [MAX_BATCH, 10]
    assert rows[0] is not None and all(row is None for row in rows[1:])
    lookup.close()
