"""Benchmark the director when a campaign starts for many vehicles: does it scale with N?

    python tools/bench/director.py [--quick] [--sizes 1000,10000] [--postgres]

For each fleet size N, in a fresh database (SQLite; ``--postgres``: a private
PostgreSQL server, fsync off), with N registered vehicles of one model (a TBox,
a Sub-driven ECU and a UDS ECU) and three uploaded images:

* ``start_vehicles_per_s`` — ``campaigns.start`` for a campaign targeting the
  whole model: every vehicle's consistency plan checked, assignments written,
  group 0 started (one transaction, what ``POST /campaigns/<name>/start`` does);
* ``publish_vehicles_per_s`` — each vehicle's director metadata signed and
  stored (targets, snapshot, timestamp with the online keys), one transaction
  per vehicle as its first poll after the start does (``device.offer``).

``*_growth`` is the rate at the largest N over the rate at the smallest: about
1.0 means the cost per vehicle does not grow with the fleet (linear or better).
The ECUs of all vehicles share one key per role (key generation is not what is
measured). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from redstone_agent.uptane.keys import generate_signer, public_key_to_dict  # noqa: E402
from redstone_cloud.backend import Backend, open_backend  # noqa: E402
from redstone_cloud.db import migrate  # noqa: E402
from redstone_cloud.db.engine import transaction  # noqa: E402
from redstone_cloud.db.models import Vehicle  # noqa: E402
from redstone_cloud.services import campaigns, device, inventory, packages  # noqa: E402
from redstone_cloud.settings import Settings  # noqa: E402

ECUS = (("tbox", "tbox-hw", "primary"), ("adas", "adas-hw", "sub"), ("bcm", "bcm-hw", "uds"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fleet(backend: Backend, vehicles: int) -> float:
    """Model, images and ``vehicles`` registered vehicles; returns registrations per second."""
    keys = {role: public_key_to_dict(generate_signer().public_key) for role, _, _ in ECUS}
    with transaction(backend.sessions) as session:
        slots = [inventory.EcuSlot(role, hw, kind) for role, hw, kind in ECUS]
        inventory.create_model(session, "bench", "sedan", "", slots)
        for role, hardware_id, _ in ECUS:
            spec = packages.PackageSpec(role, "2.0", (hardware_id,), release_counter=2)
            body = io.BytesIO(role.encode() * 1000)
            packages.upload(session, backend.store, "bench", spec, body, max_bytes=1 << 20)
    started = time.perf_counter()
    with transaction(backend.sessions) as session:
        for n in range(vehicles):
            vin = f"RSDXR{n:012d}"
            ecus = [
                inventory.EcuSpec(f"{vin}-{role}", hw, keys[role], kind == "primary")
                for role, hw, kind in ECUS
            ]
            inventory.register_vehicle(session, "bench", vin, "sedan", ecus)
    return vehicles / (time.perf_counter() - started)


def start_and_publish(backend: Backend) -> tuple[int, float, float]:
    """(vehicles started, start rate, publish rate) for one campaign over the fleet."""
    targets = tuple(f"{role}-2.0" for role, _, _ in ECUS)
    spec = campaigns.CampaignSpec("rollout", campaigns.Targeting(model="sedan"), targets)
    with transaction(backend.sessions) as session:
        campaigns.create(session, "bench", spec)
    started = time.perf_counter()
    with transaction(backend.sessions) as session:
        result = campaigns.start(session, "bench", "rollout")
    start_s = time.perf_counter() - started
    count = int(result["vehicles"])
    with backend.sessions() as session:
        ids = list(session.scalars(Vehicle.__table__.select().with_only_columns(Vehicle.id)))
    started = time.perf_counter()
    for vehicle_id in ids:
        with transaction(backend.sessions) as session:
            device.offer(session, backend.director, device.identify_by_id(session, vehicle_id))
    publish_s = time.perf_counter() - started
    return count, count / start_s, len(ids) / publish_s


def one_size(vehicles: int, database_url: str | None, root: Path) -> dict[str, float]:
    url = database_url or f"sqlite:///{root}/cloud.db"
    settings = Settings(database_url=url, data_dir=root / "data")
    backend = open_backend(settings)
    migrate.upgrade(backend.engine)
    try:
        registered = fleet(backend, vehicles)
        count, start_rate, publish_rate = start_and_publish(backend)
    finally:
        backend.close()
    if count != vehicles:
        raise SystemExit(f"the campaign started for {count} of {vehicles} vehicles")
    log(
        f"{vehicles:>6} vehicles: register {registered:7.0f}/s, start {start_rate:7.0f}/s, "
        f"publish {publish_rate:6.0f}/s"
    )
    return {
        "register_per_s": round(registered, 1),
        "start_vehicles_per_s": round(start_rate, 1),
        "publish_vehicles_per_s": round(publish_rate, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="examples:\n  python tools/bench/director.py --quick\n"
        "  python tools/bench/director.py --sizes 1000,10000 --postgres",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="sizes 200 and 1000")
    parser.add_argument("--sizes", help="comma-separated fleet sizes (default 1000,10000)")
    parser.add_argument("--postgres", action="store_true", help="a private PostgreSQL server")
    args = parser.parse_args()
    sizes = [
        int(n) for n in (args.sizes or ("200,1000" if args.quick else "1000,10000")).split(",")
    ]
    rows: dict[str, dict[str, float]] = {}
    for vehicles in sizes:
        with contextlib.ExitStack() as stack:
            url = None
            if args.postgres:
                from tests.integration.cloud.pgserver import private_server

                url = stack.enter_context(private_server())
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rs-director-")))
            rows[str(vehicles)] = one_size(vehicles, url, root)
    first, last = rows[str(sizes[0])], rows[str(sizes[-1])]
    result = {
        "database": "postgresql" if args.postgres else "sqlite",
        "sizes": rows,
        "start_vehicles_per_s": last["start_vehicles_per_s"],
        "publish_vehicles_per_s": last["publish_vehicles_per_s"],
        "start_growth": round(last["start_vehicles_per_s"] / first["start_vehicles_per_s"], 3),
        "publish_growth": round(
            last["publish_vehicles_per_s"] / first["publish_vehicles_per_s"], 3
        ),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
