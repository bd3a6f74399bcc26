"""``redstone-cloud``: run the backend and administer it from the server's shell.

Admin subcommands work directly on the database named in the config (the same
services the HTTP API uses, audited as ``cli:<user>``), so an operator on the
server needs no token.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import getpass
import json
import logging
import secrets
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from redstone_agent.cli.common import new_parser, run_main, setup_logging
from redstone_cloud import pki as certs
from redstone_cloud.backend import Backend, open_backend
from redstone_cloud.commands import bundle as bundle_commands
from redstone_cloud.commands import director as director_commands
from redstone_cloud.commands import users as user_commands
from redstone_cloud.db import migrate
from redstone_cloud.db.engine import transaction
from redstone_cloud.errors import InvalidInput
from redstone_cloud.services import (
    audit,
    campaigns,
    deltas,
    device,
    est,
    imagerepo,
    inventory,
    packages,
    pki,
)
from redstone_cloud.services.deltas import DeltaWorker
from redstone_cloud.settings import Settings, load_settings, token_digest

PROG = "redstone-cloud"
EPILOG = """\
examples:
  redstone-cloud --config cloud.toml db upgrade
  redstone-cloud --config cloud.toml pki init-ca oem-root
  redstone-cloud --config cloud.toml pki init-ca oem-devices --parent oem-root
  redstone-cloud --config cloud.toml pki server-cert ota.example.com --cert s.pem --key s.key
  redstone-cloud --config cloud.toml serve --host 0.0.0.0 --port 8443
  redstone-cloud --config cloud.toml campaign create spec.json
  redstone-cloud --config cloud.toml campaign start spring-2027
  redstone-cloud --config cloud.toml --json campaign status spring-2027
  redstone-cloud --config cloud.toml director rotate-keys --role timestamp
  redstone-cloud --config cloud.toml bundle WDB12345678901234 --output car.rsbundle
"""


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _from_file(path: str, build: Callable[[Any], Any]) -> Any:
    """``build(parsed JSON)``, with a missing or mistyped field reported as one line."""
    try:
        return build(_read_json(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{path}: missing or malformed field ({exc})") from exc


def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidInput(f"{path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}: not JSON ({exc})") from exc


# --- serve -------------------------------------------------------------------------------------


def _ssl_options(backend: Backend, args: argparse.Namespace) -> dict[str, Any]:
    tls = backend.settings.tls
    if args.no_tls:
        return {}
    if tls.cert is None or tls.key is None:
        raise InvalidInput(
            "serve needs [cloud.tls] cert and key (make them with 'pki server-cert'), or --no-tls"
        )
    client_ca = tls.client_ca
    if client_ca is None:
        client_ca = backend.settings.data_dir / "client-ca.pem"
        with backend.sessions() as session:
            bundle = pki.ca_bundle(session)
        if not bundle:
            raise InvalidInput("no CA yet for client certificates: run 'pki init-ca' first")
        client_ca.parent.mkdir(parents=True, exist_ok=True)
        client_ca.write_text(bundle)
    return {
        "ssl_certfile": str(tls.cert),
        "ssl_keyfile": str(tls.key),
        "ssl_ca_certs": str(client_ca),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
    }


def cmd_serve(backend: Backend, args: argparse.Namespace) -> Any:
    import uvicorn

    from redstone_cloud.api.app import create_asgi
    from redstone_cloud.tls import http_protocol

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger(PROG).info(
        "database %s, data in %s",
        backend.engine.url.render_as_string(hide_password=True),
        backend.settings.data_dir.resolve(),
    )
    options = _ssl_options(backend, args)
    asgi = create_asgi(backend)
    config = uvicorn.Config(
        asgi,
        host=args.host,
        port=args.port,
        http=http_protocol(backend.settings.header_timeout_s),
        timeout_keep_alive=max(1, round(backend.settings.idle_timeout_s)),
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=args.graceful_timeout,
        **options,
    )
    sockets = [socket.socket(fileno=args.fd)] if args.fd is not None else None
    worker = None
    if backend.settings.delta_interval_s > 0:
        settings = backend.settings
        worker = DeltaWorker(
            backend.sessions,
            backend.store,
            settings.delta_interval_s,
            workers=settings.delta_workers,
            min_saving=settings.delta_min_saving,
        )
        worker.start()
    gc.freeze()  # startup objects live forever: keep them out of every GC pass (poll p99)
    try:
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        asgi.close()
        if worker is not None:
            worker.stop()
    return None


def cmd_deltas(backend: Backend, args: argparse.Namespace) -> Any:
    if args.deltas_command == "list":
        with backend.sessions() as session:
            return deltas.list_jobs(session)
    workers = args.workers or backend.settings.delta_workers
    with backend.sessions() as session:
        queued = sum(1 for job in deltas.list_jobs(session) if job["state"] == "pending")
    progress = _DeltaProgress(queued)
    finished = dict(
        deltas.run_pending(
            backend.sessions,
            backend.store,
            workers=workers,
            min_saving=backend.settings.delta_min_saving,
            on_finish=progress,
        )
    )
    with backend.sessions() as session:
        return [job for job in deltas.list_jobs(session) if job["id"] in finished]


class _DeltaProgress:
    """``deltas run`` prints a line on stderr as each job ends (stdout stays the result)."""

    def __init__(self, queued: int) -> None:
        self._queued, self._done = queued, 0

    def __call__(self, job_id: int, state: str) -> None:
        self._done += 1
        of = f"/{self._queued}" if self._queued >= self._done else ""
        print(f"delta job {job_id}: {state} ({self._done}{of})", file=sys.stderr, flush=True)


# --- database, tokens, PKI -----------------------------------------------------------------------


def cmd_db(backend: Backend, args: argparse.Namespace) -> Any:
    if args.db_command == "upgrade":
        migrate.upgrade(backend.engine, args.revision)
    elif args.db_command == "downgrade":
        migrate.downgrade(backend.engine, args.revision)
    return {"revision": migrate.current_revision(backend.engine), "head": migrate.head_revision()}


def cmd_token(_backend: Backend | None, args: argparse.Namespace) -> Any:
    token = secrets.token_urlsafe(32)
    table = "metrics_readers" if args.metrics else "admins"
    return {
        "name": args.name,
        "token": token,
        "config": f'[[cloud.{table}]]\nname = "{args.name}"\n'
        f'token_sha256 = "{token_digest(token)}"',
    }


def cmd_pki(backend: Backend, args: argparse.Namespace) -> Any:
    key_dir = backend.settings.key_dir
    with transaction(backend.sessions) as session:
        if args.pki_command == "init-ca":
            ca = pki.create_ca(session, key_dir, _actor(), args.name, args.parent, key_uri=args.key)
            return {"name": ca.name, "issuing": ca.issuing, "key": pki.key_source(ca)}
        if args.pki_command == "issue":
            row = pki.issue(
                session, key_dir, _actor(), args.vin, Path(args.csr).read_bytes(), days=args.days
            )
            if args.out:
                Path(args.out).write_text(row.cert_pem)
            return {"serial": row.serial, "fingerprint": row.fingerprint, "pem": row.cert_pem}
        if args.pki_command == "revoke":
            row = pki.revoke(session, _actor(), args.serial, args.reason)
            return {"serial": row.serial, "revoked_at": row.revoked_at}
        if args.pki_command == "crl":
            return pki.crl(session, key_dir, args.name).decode()
        cert, key = pki.server_certificate(session, key_dir, args.hostnames)
    Path(args.cert).write_text(certs.cert_pem(cert))
    Path(args.key).touch(mode=0o600)
    Path(args.key).write_bytes(certs.key_to_pem(key))
    return {"cert": args.cert, "key": args.key}


# --- inventory, packages, campaigns ------------------------------------------------------------


def cmd_model(backend: Backend, args: argparse.Namespace) -> Any:
    with transaction(backend.sessions) as session:
        if args.model_command == "create":
            name, description, slots = _from_file(
                args.file,
                lambda d: (
                    str(d["name"]),
                    str(d.get("description", "")),
                    [inventory.EcuSlot(**slot) for slot in d["ecus"]],
                ),
            )
            model = inventory.create_model(session, _actor(), name, description, slots)
            return {"name": model.name}
        return [{"name": m.name, "ecus": len(m.ecus)} for m in inventory.list_models(session)]


def cmd_vehicle(backend: Backend, args: argparse.Namespace) -> Any:
    with transaction(backend.sessions) as session:
        if args.vehicle_command == "register":
            spec = _from_file(args.file, dict)
            ecus = _from_file(args.file, lambda d: [inventory.EcuSpec(**e) for e in d["ecus"]])
            if not all(key in spec for key in ("vin", "model")):
                raise InvalidInput(f"{args.file}: needs 'vin' and 'model'")
            vehicle = inventory.register_vehicle(
                session,
                _actor(),
                spec["vin"],
                spec["model"],
                ecus,
                baseline_name=spec.get("baseline"),
            )
            return {"vin": vehicle.vin}
        if args.vehicle_command == "enroll-token":
            token, expires = est.new_token(
                session, _actor(), args.vin, dt.timedelta(hours=args.ttl_hours)
            )
            return {"vin": args.vin, "token": token, "expires_at": expires.isoformat()}
        vehicle = inventory.get_vehicle(session, args.vin)
        return {
            "vin": vehicle.vin,
            "model": vehicle.model.name,
            "ecus": [
                {"serial": e.serial, "hardware_id": e.hardware_id, "installed": e.installed_target}
                for e in vehicle.ecus
            ],
        }


def cmd_package(backend: Backend, args: argparse.Namespace) -> Any:
    with transaction(backend.sessions) as session:
        if args.package_command == "upload":
            spec = packages.PackageSpec(
                args.name,
                args.version,
                tuple(args.hardware_id),
                args.kind,
                args.release_counter,
                args.supplier,
                args.target,
            )
            with Path(args.file).open("rb") as source:
                package = packages.upload(
                    session,
                    backend.store,
                    _actor(),
                    spec,
                    source,
                    max_bytes=backend.settings.max_upload_bytes,
                )
                if backend.image_signer is not None:
                    imagerepo.publish_online(session, backend.image_signer, package)
            return {"target": package.target, "sha256": package.sha256, "length": package.length}
        return [
            {"target": p.target, "kind": p.kind, "length": p.length, "sha256": p.sha256}
            for p in packages.list_packages(session, args.name)
        ]


def _campaign_spec(data: dict[str, Any]) -> campaigns.CampaignSpec:
    start_at = data.get("start_at")
    return campaigns.CampaignSpec(
        name=data["name"],
        targeting=campaigns.Targeting.from_dict(data.get("targeting", {})),
        packages=tuple(data.get("packages", ())),
        groups=tuple(campaigns.GroupSpec(**g) for g in data.get("groups", [{"percent": 100}])),
        consent_required=bool(data.get("consent_required", False)),
        start_at=dt.datetime.fromisoformat(start_at) if start_at else None,
        window=data.get("window"),
        release_notes_url=str(data.get("release_notes_url", "")),
    )


def _create_campaign(session: Session, args: argparse.Namespace) -> str:
    spec = _from_file(args.file, _campaign_spec)
    if args.release_notes_url is not None:
        spec = dataclasses.replace(spec, release_notes_url=args.release_notes_url)
    return campaigns.create(session, _actor(), spec).name


def cmd_campaign(backend: Backend, args: argparse.Namespace) -> Any:
    actions: dict[str, Callable[[Session], Any]] = {
        "create": lambda s: _create_campaign(s, args),
        "start": lambda s: campaigns.start(s, _actor(), args.name),
        "pause": lambda s: campaigns.pause(s, _actor(), args.name, args.reason).state,
        "resume": lambda s: campaigns.resume(s, _actor(), args.name).state,
        "cancel": lambda s: campaigns.cancel(s, _actor(), args.name, args.reason).state,
        "status": lambda s: campaigns.status(s, args.name),
        "vehicles": lambda s: campaigns.vehicle_states(
            s, args.name, args.state, args.limit, args.after_id
        ),
        "list": lambda s: [{"name": c.name, "state": c.state} for c in campaigns.list_all(s)],
    }
    with transaction(backend.sessions) as session:
        return actions[args.campaign_command](session)


def cmd_audit(backend: Backend, args: argparse.Namespace) -> Any:
    query = audit.AuditQuery(
        actor=args.actor, action=args.action, object_id=args.object_id, limit=args.limit
    )
    with backend.sessions() as session:
        if args.export:
            for line in audit.export_jsonl(session, query):
                sys.stdout.write(line)
            return None
        return [audit.as_dict(e) for e in audit.search(session, query)]


def cmd_logs(backend: Backend, args: argparse.Namespace) -> Any:
    with backend.sessions() as session:
        return device.search_logs(session, args.vin, args.campaign, args.q, args.limit)


# --- argument parsing ----------------------------------------------------------------------


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the HTTPS API (mTLS for devices)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument(
        "--fd", type=int, help="serve on an inherited listening socket (socket activation, tests)"
    )
    serve.add_argument("--no-tls", action="store_true", help="plain HTTP (behind a TLS proxy)")
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        help="seconds to let open requests finish on SIGTERM before closing them (default 10)",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)


def _add_db(sub: Any) -> None:
    db = sub.add_parser("db", help="schema migrations (Alembic)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate up (default: newest)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="migrate down ('base' drops everything)")
    down.add_argument("revision")
    db_sub.add_parser("current", help="show the schema revision")
    db.set_defaults(func=cmd_db)


def _add_admin(sub: Any) -> None:
    admin = sub.add_parser("admin", help="admin API credentials")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    token = admin_sub.add_parser(
        "token",
        help="make a bearer token and its config entry",
        description="Print a new bearer token (shown once) and the config entry that"
        " admits it: only the token's SHA-256 goes into the config.",
        epilog="examples:\n"
        "  redstone-cloud admin token alice             an admin (the whole admin API)\n"
        "  redstone-cloud admin token prometheus --metrics\n"
        "                                               GET /metrics and nothing else",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    token.add_argument("name", help="who holds it: the actor in the audit trail")
    token.add_argument(
        "--metrics",
        action="store_true",
        help="a read-only token for GET /metrics ([[cloud.metrics_readers]])",
    )
    admin.set_defaults(func=cmd_token, no_backend=True)


def _add_pki(sub: Any) -> None:
    pki_p = sub.add_parser("pki", help="device identities: CAs, certificates, revocation")
    pki_sub = pki_p.add_subparsers(dest="pki_command", required=True)
    init = pki_sub.add_parser(
        "init-ca",
        help="create a root CA, or an intermediate with --parent",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  a key in a 0600 file under data_dir/keys:
    pki init-ca oem-root
  a key made on a token (never extractable), or the one with that label there:
    pki init-ca oem-root --key 'pkcs11:token=OEM%20CA;object=oem-root\
?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/redstone/ca.pin'

The PIN comes from pin-source= or REDSTONE_PKCS11_PIN, never the command line;
the module from module-path= or REDSTONE_PKCS11_MODULE (docs/keys.md).""",
    )
    init.add_argument("name")
    init.add_argument("--parent")
    init.add_argument(
        "--key", metavar="PKCS11_URI", help="the CA key on a PKCS#11 token (RFC 7512 URI)"
    )
    issue = pki_sub.add_parser("issue", help="issue a vehicle's client certificate from a CSR")
    issue.add_argument("vin")
    issue.add_argument("csr", help="PEM certificate signing request file")
    issue.add_argument("--days", type=int, default=825)
    issue.add_argument("--out", help="write the certificate PEM here")
    revoke = pki_sub.add_parser("revoke", help="revoke a device certificate by serial (hex)")
    revoke.add_argument("serial")
    revoke.add_argument("--reason", default="")
    crl = pki_sub.add_parser("crl", help="print a CA's CRL (PEM)")
    crl.add_argument("name")
    server = pki_sub.add_parser("server-cert", help="TLS certificate for 'serve'")
    server.add_argument("hostnames", nargs="+")
    server.add_argument("--cert", required=True)
    server.add_argument("--key", required=True)
    pki_p.set_defaults(func=cmd_pki)


def _add_inventory(sub: Any) -> None:
    model = sub.add_parser("model", help="vehicle models")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    model_sub.add_parser("create", help="from a JSON file {name, description, ecus}").add_argument(
        "file"
    )
    model_sub.add_parser("list")
    model.set_defaults(func=cmd_model)

    vehicle = sub.add_parser("vehicle", help="vehicles and their ECUs")
    vehicle_sub = vehicle.add_subparsers(dest="vehicle_command", required=True)
    vehicle_sub.add_parser("register", help="from a JSON file {vin, model, ecus}").add_argument(
        "file"
    )
    vehicle_sub.add_parser("show").add_argument("vin")
    enroll = vehicle_sub.add_parser(
        "enroll-token",
        help="a one-time token with which the vehicle gets its certificate over EST",
        description="Print a one-time enrollment token for VIN (shown once; only its"
        " SHA-256 is kept). The vehicle's Master enrolls with it over EST"
        " (/.well-known/est/simpleenroll, HTTP Basic VIN:token) and renews its"
        " certificate itself afterwards (docs/keys.md).",
    )
    enroll.add_argument("vin")
    enroll.add_argument(
        "--ttl-hours", type=float, default=168.0, help="how long it stays usable (default: 7 days)"
    )
    vehicle.set_defaults(func=cmd_vehicle)

    package = sub.add_parser("package", help="software packages")
    package_sub = package.add_subparsers(dest="package_command", required=True)
    upload = package_sub.add_parser("upload", help="store an image and queue its deltas")
    upload.add_argument("file")
    upload.add_argument("--name", required=True)
    upload.add_argument("--version", required=True)
    upload.add_argument("--hardware-id", action="append", required=True)
    upload.add_argument("--kind", default="image", choices=packages.KINDS)
    upload.add_argument("--release-counter", type=int, default=0)
    upload.add_argument("--supplier", default="")
    upload.add_argument("--target", help="Uptane target name (default NAME-VERSION)")
    package_sub.add_parser("list").add_argument("--name")
    package.set_defaults(func=cmd_package)


def _add_campaign(sub: Any) -> None:
    campaign = sub.add_parser("campaign", help="define and drive campaigns")
    campaign_sub = campaign.add_subparsers(dest="campaign_command", required=True)
    create = campaign_sub.add_parser("create", help="from a JSON file (see docs/api.md)")
    create.add_argument("file")
    create.add_argument(
        "--release-notes-url",
        metavar="URL",
        help="where the release notes are (shown to the driver); overrides the file's",
    )
    for verb in ("start", "resume", "status"):
        campaign_sub.add_parser(verb).add_argument("name")
    for verb in ("pause", "cancel"):
        p = campaign_sub.add_parser(verb)
        p.add_argument("name")
        p.add_argument("--reason", default="")
    vehicles = campaign_sub.add_parser("vehicles", help="per-vehicle status, paged")
    vehicles.add_argument("name")
    vehicles.add_argument("--state")
    vehicles.add_argument("--limit", type=int, default=1000, help="at most 1000 per page")
    vehicles.add_argument(
        "--after-id", type=int, default=0, help="next page: the last row's id from the previous"
    )
    campaign_sub.add_parser("list")
    campaign.set_defaults(func=cmd_campaign)


def cmd_openapi(_backend: Backend | None, args: argparse.Namespace) -> Any:
    from redstone_cloud.api.app import openapi_document

    sys.stdout.write(openapi_document())
    return None


def _add_openapi(sub: Any) -> None:
    openapi = sub.add_parser("openapi", help="print the API's OpenAPI document (JSON)")
    openapi.set_defaults(func=cmd_openapi, no_backend=True)


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _add_deltas(sub: Any) -> None:
    deltas_p = sub.add_parser("deltas", help="background delta generation")
    deltas_sub = deltas_p.add_subparsers(dest="deltas_command", required=True)
    run = deltas_sub.add_parser(
        "run",
        help="make every queued delta now (serve also does this)",
        description="Make every queued delta now, several at a time with --workers; "
        "prints the jobs it ran. A delta not smaller than its full image by "
        "delta_min_saving is skipped (vehicles download the full image).",
        epilog="example: redstone-cloud --config cloud.toml deltas run --workers 2",
    )
    run.add_argument(
        "--workers",
        type=_at_least_one,
        help="jobs at a time (default: the delta_workers setting)",
    )
    deltas_sub.add_parser(
        "list",
        help="every delta job: state, sizes, and why one failed or was skipped",
        epilog="example: redstone-cloud --config cloud.toml --json deltas list",
    )
    deltas_p.set_defaults(func=cmd_deltas)


def _add_audit(sub: Any) -> None:
    audit_p = sub.add_parser("audit", help="query or export the audit trail")
    audit_p.add_argument("--actor")
    audit_p.add_argument("--action")
    audit_p.add_argument("--object-id")
    audit_p.add_argument("--limit", type=int, default=100)
    audit_p.add_argument("--export", action="store_true", help="all matches as JSON Lines")
    audit_p.set_defaults(func=cmd_audit)

    logs = sub.add_parser("logs", help="search uploaded vehicle logs")
    logs.add_argument("--vin")
    logs.add_argument("--campaign")
    logs.add_argument("--q", help="text the log must contain")
    logs.add_argument("--limit", type=int, default=100)
    logs.set_defaults(func=cmd_logs)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Redstone OTA backend: serve the device and admin API, migrate the database,"
        " and administer models, vehicles, packages, campaigns, director keys, PKI and the"
        " audit trail.",
        EPILOG,
    )
    parser.add_argument("--config", type=Path, help="TOML file with a [cloud] table")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_serve(sub)
    _add_db(sub)
    _add_admin(sub)
    _add_pki(sub)
    _add_inventory(sub)
    _add_campaign(sub)
    director_commands.add(sub)
    bundle_commands.add(sub)
    user_commands.add(sub)
    _add_deltas(sub)
    _add_openapi(sub)
    _add_audit(sub)
    return parser


def _require_schema(backend: Backend) -> None:
    if migrate.current_revision(backend.engine) != migrate.head_revision():
        raise InvalidInput("database schema is not current: run 'redstone-cloud db upgrade'")


def _print(result: Any, as_json: bool) -> None:
    if result is None:
        return
    if as_json or not isinstance(result, str):
        print(json.dumps(result, indent=None if as_json else 2, default=str, sort_keys=True))
    else:
        print(result)


def _run(args: argparse.Namespace) -> int:
    backend: Backend | None = None
    try:
        settings: Settings = load_settings(args.config)
        if not getattr(args, "no_backend", False):
            backend = open_backend(settings)
            if args.command != "db":
                _require_schema(backend)
        _print(args.func(backend, args), args.json)
    except OperationalError as exc:
        reason = "; ".join(line.strip() for line in str(exc.orig).splitlines())
        raise InvalidInput(f"database unreachable or failing: {reason}") from exc
    except OSError as exc:  # a file named on the command line, or serve's address
        raise InvalidInput(f"{exc.filename or 'I/O error'}: {exc.strerror or exc}") from exc
    finally:
        if backend is not None:
            backend.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":  # serve sets up logging from --log-level
        setup_logging(PROG, args.verbose)
        if not args.verbose:  # Alembic narrates every schema check at INFO
            logging.getLogger("alembic").setLevel(logging.WARNING)
    return run_main(PROG, lambda: _run(args))
