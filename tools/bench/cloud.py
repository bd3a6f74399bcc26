"""Cloud backend benchmark: device polls (ETag hits) and manifest ingest over real mTLS.

    python tools/bench/cloud.py [--quick] [--vehicles N] [--seconds S] [--servers K]
                                [--postgres] [--sweep 1,2,4]

Registers N vehicles (each with three ECU keys and its own client certificate)
in a fresh SQLite database (``--postgres``: a private PostgreSQL server, fsync
off), starts K ``redstone-cloud serve`` processes sharing one listening socket on
127.0.0.1, then:

1. Closed-loop ceilings over the same 64 keep-alive connections: ``healthz_per_s``
   (``/healthz``: no auth, no DB, the ceiling of this HTTP+TLS stack here) and
   ``poll_ceiling_per_s`` (polls carrying ``If-None-Match``, answered 304);
   ``poll_ceiling_vs_healthz`` is what a poll costs beyond HTTP itself (target ≥ 0.7).
2. Open-loop polls at the target rate (3333/s = one million vehicles polling every
   5 minutes) spread over the N vehicles, each on its own keep-alive TLS
   connection, every request carrying ``If-None-Match`` (so answered 304).
   Latency counts from the *scheduled* send time, so a server that falls
   behind cannot hide it (no coordinated omission).
3. ``manifests_per_s``: closed-loop nonce + signed vehicle manifest (3 ECUs).

``--sweep 1,2,4`` instead measures the two ceilings with each number of server
processes (``ceilings_by_servers``, ``polls_growth`` relative to the first).

The last line is one JSON object. Load generator and servers share the
machine's cores: the figures are for the whole system on this box.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from redstone_agent.uptane.keys import Signer, generate_signer, public_key_to_dict
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest, sign_vehicle_manifest
from redstone_cloud import pki as certs
from redstone_cloud.backend import open_backend
from redstone_cloud.db import migrate
from redstone_cloud.db.engine import transaction
from redstone_cloud.services import inventory, pki
from redstone_cloud.settings import load_settings

TARGET_POLLS_PER_S = 3333
TARGET_P99_MS = 50.0
ECUS = (("tbox", "tbox-hw", "primary"), ("adas", "adas-hw", "sub"), ("bcm", "bcm-hw", "uds"))


@dataclass
class Car:
    vin: str
    ssl: ssl.SSLContext
    signers: Mapping[str, Signer]


def _pem_key(key: certs.CaKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def build_fleet(
    root: Path, vehicles: int, database_url: str | None = None
) -> tuple[Path, Path, list[Car]]:
    """Database, CA, server certificate and N registered vehicles with client certs."""
    config = root / "cloud.toml"
    url = database_url or f"sqlite:///{root}/cloud.db"
    config.write_text(
        f'[cloud]\ndatabase_url = "{url}"\ndata_dir = "{root}/data"\n'
        f'[cloud.tls]\ncert = "{root}/server.pem"\nkey = "{root}/server.key"\n'
    )
    settings = load_settings(config)
    backend = open_backend(settings)
    migrate.upgrade(backend.engine)
    cars: list[Car] = []
    with transaction(backend.sessions) as session:
        pki.create_ca(session, settings.key_dir, "bench", "root")
        slots = [inventory.EcuSlot(role, hw, kind) for role, hw, kind in ECUS]
        inventory.create_model(session, "bench", "sedan", "", slots)
        cert, key = pki.server_certificate(session, settings.key_dir, ["127.0.0.1"])
        (root / "server.pem").write_text(certs.cert_pem(cert))
        (root / "server.key").write_bytes(_pem_key(key))
        (root / "ca.pem").write_text(pki.ca_bundle(session))
        for n in range(vehicles):
            vin = f"RSBENCH{n:010d}"
            signers = {f"{vin}-{role}": generate_signer() for role, _, _ in ECUS}
            specs = [
                inventory.EcuSpec(
                    serial, hw, public_key_to_dict(signers[serial].public_key), kind == "primary"
                )
                for serial, (_, hw, kind) in zip(signers, ECUS, strict=True)
            ]
            inventory.register_vehicle(session, "bench", vin, "sedan", specs)
            device_key = ec.generate_private_key(ec.SECP256R1())
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vin)]))
                .sign(device_key, hashes.SHA256())
            )
            row = pki.issue(
                session,
                settings.key_dir,
                "bench",
                vin,
                csr.public_bytes(serialization.Encoding.PEM),
            )
            (root / f"{vin}.pem").write_text(row.cert_pem)
            (root / f"{vin}.key").write_bytes(_pem_key(device_key))
            context = ssl.create_default_context(cafile=str(root / "ca.pem"))
            context.load_cert_chain(root / f"{vin}.pem", root / f"{vin}.key")
            cars.append(Car(vin, context, signers))
    backend.close()
    return config, root / "ca.pem", cars


def start_servers(config: Path, count: int) -> tuple[int, list[subprocess.Popen[bytes]]]:
    """K server processes accepting on one shared socket (the kernel spreads connections)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "redstone_cloud", "--config", str(config), "serve"]
            + ["--fd", str(listener.fileno()), "--log-level", "warning", "--graceful-timeout", "1"],
            pass_fds=[listener.fileno()],
        )
        for _ in range(count)
    ]
    listener.close()
    return port, procs


class Connection:
    """A keep-alive HTTP/1.1 connection speaking just enough HTTP to measure the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> Connection:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        received: dict[str, str] = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            received[key.strip().lower()] = value.strip()
        size = int(received.get("content-length", "0"))
        return status, received, await self.reader.readexactly(size) if size else b""

    def close(self) -> None:
        self.writer.close()


async def wait_ready(port: int, context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = await Connection.open(port, context)
            status, _, _ = await conn.request("GET", "/healthz")
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("server did not come up")


async def closed_loop(
    port: int,
    cars: list[Car],
    seconds: float,
    path: str,
    *,
    headers: list[dict[str, str]] | None = None,
    expect: int = 200,
) -> float:
    """Requests per second with each connection sending back-to-back (``headers[i]`` on
    car i's requests, each answered ``expect``)."""
    conns = [await Connection.open(port, car.ssl) for car in cars]
    stop = time.monotonic() + seconds
    done = 0

    async def run(i: int, conn: Connection) -> None:
        nonlocal done
        sent = headers[i] if headers else None
        while time.monotonic() < stop:
            status, _, _ = await conn.request("GET", path, sent)
            assert status == expect, status
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(run(i, c) for i, c in enumerate(conns)))
    elapsed = time.monotonic() - start
    for conn in conns:
        conn.close()
    return done / elapsed


async def poll_etags(port: int, cars: list[Car]) -> list[dict[str, str]]:
    """Each car's ``If-None-Match`` header: its poll answer's ETag (a poll then costs a 304)."""
    headers = []
    for car in cars:
        conn = await Connection.open(port, car.ssl)
        status, answer, _ = await conn.request("GET", "/api/v1/device/poll")
        assert status == 200, status
        headers.append({"If-None-Match": answer["etag"]})
        conn.close()
    return headers


async def ceilings(port: int, cars: list[Car], seconds: float) -> tuple[float, float]:
    """Closed-loop ``/healthz`` and ETag-hit poll ceilings over the same 64 connections:
    what HTTP+TLS alone costs here, and what a poll costs on top."""
    some = cars[:64]
    healthz = await closed_loop(port, some, seconds, "/healthz")
    etags = await poll_etags(port, some)
    polls = await closed_loop(port, some, seconds, "/api/v1/device/poll", headers=etags, expect=304)
    return healthz, polls


async def open_loop_polls(
    port: int, cars: list[Car], rate: float, seconds: float
) -> tuple[float, list[float], int]:
    """Polls at ``rate`` in total, each car on its own schedule; latencies in ms."""
    conns = [await Connection.open(port, car.ssl) for car in cars]
    etags: list[str] = []
    for conn in conns:
        status, headers, _ = await conn.request("GET", "/api/v1/device/poll")
        assert status == 200, status
        etags.append(headers["etag"])
    interval = len(cars) / rate
    latencies: list[float] = []
    not_modified = 0
    begin = time.monotonic() + 0.2

    async def run(i: int) -> None:
        nonlocal not_modified
        due = begin + random.uniform(0, interval)
        headers = {"If-None-Match": etags[i]}
        while due < begin + seconds:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            status, _, _ = await conns[i].request("GET", "/api/v1/device/poll", headers)
            latencies.append((time.monotonic() - due) * 1000)
            not_modified += status == 304
            due += interval

    await asyncio.gather(*(run(i) for i in range(len(conns))))
    elapsed = time.monotonic() - begin
    for conn in conns:
        conn.close()
    return len(latencies) / elapsed, latencies, not_modified


async def manifests(port: int, cars: list[Car], seconds: float) -> float:
    """Verified manifests per second (nonce round trip + signed manifest), closed loop."""
    conns = [await Connection.open(port, car.ssl) for car in cars]
    stop = time.monotonic() + seconds
    done = 0

    async def run(car: Car, conn: Connection) -> None:
        nonlocal done
        factory = "0" * 64
        while time.monotonic() < stop:
            status, _, body = await conn.request("POST", "/api/v1/device/nonce")
            assert status == 200, body
            nonce = json.loads(body)["nonce"]
            envelopes = {
                serial: sign_ecu_manifest(
                    EcuManifest(serial, "factory.img", 1, factory, 0, nonce=nonce), signer
                )
                for serial, signer in car.signers.items()
            }
            primary = next(iter(car.signers))
            data = sign_vehicle_manifest(car.vin, primary, nonce, envelopes, car.signers[primary])
            status, _, body = await conn.request(
                "POST", "/api/v1/device/manifest", {"Content-Type": "application/json"}, data
            )
            assert status == 200, body
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(run(car, conn) for car, conn in zip(cars, conns, strict=True)))
    elapsed = time.monotonic() - start
    for conn in conns:
        conn.close()
    return done / elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _event_loop_policy() -> str:
    """uvloop for the load generator when installed: it must not be the bottleneck."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="examples:\n  python tools/bench/cloud.py --quick\n"
        "  python tools/bench/cloud.py --postgres --sweep 1,2,4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small fleet, short runs")
    parser.add_argument("--vehicles", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--servers", type=int, default=2, help="server processes")
    parser.add_argument("--rate", type=float, default=TARGET_POLLS_PER_S)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="a private PostgreSQL server (initdb in a temp dir, fsync off) instead of SQLite",
    )
    parser.add_argument(
        "--sweep",
        help="comma-separated server process counts: the closed-loop ceilings for each",
    )
    args = parser.parse_args()
    vehicles = args.vehicles or (100 if args.quick else 1000)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    with contextlib.ExitStack() as stack:
        database_url = None
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
            from tests.integration.cloud.pgserver import private_server

            database_url = stack.enter_context(private_server())
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="rs-bench-cloud-"))
        t0 = time.monotonic()
        config, ca_file, cars = build_fleet(Path(tmp), vehicles, database_url)
        print(f"fleet of {vehicles} vehicles ready in {time.monotonic() - t0:.1f}s", flush=True)
        if args.sweep:
            counts = [int(n) for n in args.sweep.split(",")]
            result = sweep(config, ca_file, cars, counts, seconds)
        else:
            result = measure(
                config, ca_file, cars, servers=args.servers, offered=args.rate, seconds=seconds
            )
    result["database"] = "postgresql" if args.postgres else "sqlite"
    print(json.dumps(result))
    return 0


def serving(config: Path, ca_file: Path, count: int) -> contextlib.AbstractContextManager[int]:
    """``count`` server processes on one socket, ready; yields the port."""

    @contextlib.contextmanager
    def run() -> Iterator[int]:
        port, procs = start_servers(config, count)
        try:
            asyncio.run(wait_ready(port, ssl.create_default_context(cafile=str(ca_file))))
            yield port
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)

    return run()


def sweep(
    config: Path, ca_file: Path, cars: list[Car], counts: list[int], seconds: float
) -> dict[str, object]:
    """Closed-loop ceilings per number of server processes: polls should grow with
    processes until the cores run out (load generator included)."""
    rows = {}
    for count in counts:
        with serving(config, ca_file, count) as port:
            healthz, polls = asyncio.run(ceilings(port, cars, seconds / 2))
        print(f"{count} servers: healthz {healthz:.0f}/s, polls {polls:.0f}/s", flush=True)
        rows[str(count)] = {"healthz_per_s": round(healthz, 1), "polls_per_s": round(polls, 1)}
    first = rows[str(counts[0])]["polls_per_s"]
    return {
        "vehicles": len(cars),
        "cpus": os.cpu_count(),
        "client_loop": _event_loop_policy(),
        "ceilings_by_servers": rows,
        "polls_growth": {n: round(row["polls_per_s"] / first, 3) for n, row in rows.items()},
    }


def measure(
    config: Path, ca_file: Path, cars: list[Car], *, servers: int, offered: float, seconds: float
) -> dict[str, object]:
    loop_kind = _event_loop_policy()
    with serving(config, ca_file, servers) as port:
        healthz, ceiling = asyncio.run(ceilings(port, cars, seconds / 2))
        print(f"healthz: {healthz:.0f}/s, poll ceiling {ceiling:.0f}/s", flush=True)
        rate, latencies, hits = asyncio.run(open_loop_polls(port, cars, offered, seconds))
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        print(f"polls: {rate:.0f}/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
        ingest = asyncio.run(manifests(port, cars[:16], seconds / 2))
        print(f"manifests: {ingest:.0f}/s", flush=True)
    return {
        "vehicles": len(cars),
        "servers": servers,
        "client_loop": loop_kind,
        "cpus": os.cpu_count(),
        "offered_polls_per_s": offered,
        "polls_per_s": round(rate, 1),
        "poll_p50_ms": round(p50, 2),
        "poll_p99_ms": round(p99, 2),
        "poll_304_share": round(hits / max(1, len(latencies)), 4),
        "poll_mean_ms": round(statistics.fmean(latencies), 2),
        "manifests_per_s": round(ingest, 1),
        "healthz_per_s": round(healthz, 1),
        "poll_ceiling_per_s": round(ceiling, 1),
        "poll_ceiling_vs_healthz": round(ceiling / healthz, 3),
        "polls_vs_healthz": round(rate / healthz, 3),
        "polls_vs_target": round(rate / TARGET_POLLS_PER_S, 3),
        "target_met": rate >= TARGET_POLLS_PER_S * 0.99 and p99 < TARGET_P99_MS,
    }


if __name__ == "__main__":
    sys.exit(main())
