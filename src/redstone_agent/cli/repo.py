"""``redstone-repo``: build, sign, publish and check Uptane repositories."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from redstone_agent.cli.common import new_parser, run_main, setup_logging
from redstone_agent.uptane.bundle import DIRECTOR, IMAGE, MetadataBundle
from redstone_agent.uptane.errors import RepositoryToolError
from redstone_agent.uptane.keys import (
    ALGORITHMS,
    Algorithm,
    generate_signer,
    load_signer,
    public_key_from_dict,
    public_key_to_dict,
    save_signer,
    signer_from_uri,
)
from redstone_agent.uptane.primary import PrimaryConfig, PrimaryVerifier
from redstone_agent.uptane.repository import TOP_LEVEL, Assignment, Repository, RoleKeys
from redstone_agent.uptane.targetinfo import ImageFields, sha256_of
from redstone_agent.uptane.tufapi import CryptoSigner
from redstone_agent.uptane.verifier import EcuState, TrustedRoots, verify_full
from redstone_agent.uptane.workspace import Workspace, read_published

PROG = "redstone-repo"

DESCRIPTION = """\
Build, sign, publish and check Uptane repositories (image repository or
director). Edits are pending until 'sign' re-signs them; 'publish' writes the
tree a static HTTP server serves. docs/uptane.md walks through it all.
"""

EPILOG = """\
examples:
  redstone-repo init image-ws --name image
  redstone-repo add-target image-ws fw.bin --hardware-id hw-a --release-counter 1
  redstone-repo sign image-ws
  redstone-repo publish image-ws /srv/uptane/image

Exit status is 0 on success, 1 on any error (one line on stderr).
"""

_WS_HELP = "repository workspace directory"
_Command = Callable[[str, Any, str], argparse.ArgumentParser]


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise RepositoryToolError(f"{what} must look like NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RepositoryToolError(f"{what} must be an integer, got {value!r}") from None


def cmd_init(args: argparse.Namespace) -> dict[str, Any]:
    thresholds = {r: _int(v, "threshold") for r, v in _pairs(args.threshold, "--threshold").items()}
    expiry = {r: _int(v, "expiry") for r, v in _pairs(args.expiry, "--expiry").items()}
    unknown = (thresholds.keys() | expiry.keys()) - {*TOP_LEVEL, "delegated"}
    if unknown:
        raise RepositoryToolError(f"unknown role(s): {', '.join(sorted(unknown))}")
    keys = {}
    for role in TOP_LEVEL:
        n = thresholds.get(role, 1)
        keys[role] = RoleKeys([generate_signer(args.algorithm) for _ in range(n)], n)
    repo = Repository.create(
        args.name, keys, expiry={r: timedelta(days=d) for r, d in expiry.items()}
    )
    Workspace.create(args.workspace, repo)
    return {
        "workspace": str(args.workspace),
        "name": args.name,
        "keys": {r: [s.public_key.keyid for s in k.signers] for r, k in keys.items()},
    }


def cmd_add_target(args: argparse.Namespace) -> dict[str, Any]:
    ws = Workspace.open(args.workspace)
    path = args.path or args.file.name
    extra = {"version": args.version} if args.version else {}
    fields = ImageFields(tuple(args.hardware_id), args.release_counter, args.delta_source, extra)
    target = ws.add_image_file(path, args.file, fields, args.role)
    ws.save()
    return {
        "path": path,
        "role": args.role,
        "length": target.length,
        "sha256": target.hashes["sha256"],
    }


def cmd_delegate(args: argparse.Namespace) -> dict[str, Any]:
    ws = Workspace.open(args.workspace)
    if args.public_key:
        try:
            keys = [public_key_from_dict(json.loads(p.read_text())) for p in args.public_key]
        except (OSError, ValueError) as exc:
            raise RepositoryToolError(f"cannot read public key: {exc}") from exc
        role_keys = RoleKeys([], args.threshold, keys)
    else:
        signers = [generate_signer(args.algorithm) for _ in range(args.threshold)]
        for signer in signers:
            ws.store_key(args.name, signer)
        role_keys = RoleKeys(signers, args.threshold)
    ws.repository.delegate(args.name, role_keys, args.paths, parent=args.parent)
    ws.save()
    keyids = [k.keyid for k in role_keys.all_keys()]
    return {"role": args.name, "paths": args.paths, "keyids": keyids}


def cmd_assign(args: argparse.Namespace) -> dict[str, Any]:
    ws = Workspace.open(args.workspace)
    image = Workspace.open(args.image)
    assignments = []
    for item in args.ecu:
        serial, sep, rest = item.partition("=")
        hardware_id, sep2, path = rest.partition(":")
        if not (sep and sep2 and serial and hardware_id and path):
            raise RepositoryToolError(f"--ecu must look like SERIAL=HWID:PATH, got {item!r}")
        target = image.repository.find_target(path)
        fields = ImageFields.from_target(target)
        assignments.append(
            Assignment(
                serial,
                hardware_id,
                path,
                target.length,
                sha256_of(target, "image"),
                fields.release_counter,
                fields.delta_source_sha256,
            )
        )
    ws.repository.assign(assignments)
    ws.save()
    return {"assigned": {a.ecu_serial: a.filename for a in assignments}}


def cmd_sign(args: argparse.Namespace) -> dict[str, Any]:
    ws = Workspace.open(args.workspace, args.key)
    ws.repository.dirty.update(args.roles)
    if not ws.repository.dirty:
        ws.repository.refresh_timestamp()
        committed = ["timestamp"]
    else:
        committed = [*ws.repository.commit(), "snapshot", "timestamp"]
    ws.save()
    return {"signed": committed, "versions": _versions(ws.repository)}


def cmd_timestamp(args: argparse.Namespace) -> dict[str, Any]:
    ws = Workspace.open(args.workspace, args.key)
    if args.snapshot:
        ws.repository.dirty.add("snapshot")
        ws.repository.commit()
    else:
        ws.repository.refresh_timestamp()
    ws.save()
    return {"versions": _versions(ws.repository)}


def cmd_rotate(args: argparse.Namespace) -> dict[str, Any]:
    ws = Workspace.open(args.workspace, args.key)
    new = load_signer(args.new_key) if args.new_key else generate_signer(args.algorithm)
    ws.repository.rotate_key(args.role, args.old_keyid, new)
    ws.store_key(args.role, new)
    ws.repository.commit()
    ws.retire_key(args.role, args.old_keyid)
    ws.save()
    return {"role": args.role, "removed": args.old_keyid, "added": new.public_key.keyid}


def cmd_key_generate(args: argparse.Namespace) -> dict[str, Any]:
    signer = (
        _token_signer(args.pkcs11, args.algorithm)
        if args.pkcs11
        else generate_signer(args.algorithm)
    )
    try:
        save_signer(signer, args.file)
    except FileExistsError:
        raise RepositoryToolError(f"{args.file} exists; refusing to overwrite a key") from None
    public = public_key_to_dict(signer.public_key)
    if args.public:
        args.public.write_text(json.dumps(public, indent=2) + "\n")
    return public


def _token_signer(uri_text: str, algorithm: Algorithm) -> CryptoSigner:
    """The key ``uri_text`` names on its token, made there (never extractable) when the
    token holds no key with that label: ``algorithm`` if the token has it, else P-256."""
    from redstone_agent.pkcs11 import token, uri

    try:
        parsed = uri.parse(uri_text)
        token.open_or_generate(parsed, prefer=algorithm).close()
    except (uri.UriError, token.TokenError) as exc:
        raise RepositoryToolError(str(exc)) from None
    return signer_from_uri(parsed.full(), "--pkcs11")


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    ws = Workspace.open(args.workspace)
    repo = ws.repository
    roles = {}
    for role, meta in repo.roles.items():
        delegated = repo.delegator_of(role).get_delegated_role(role)
        roles[role] = {
            "version": meta.signed.version,
            "expires": meta.signed.expires.isoformat(),
            "threshold": delegated.threshold,
            "keyids": list(delegated.keyids),
            "signing_keys_here": len(repo.signers.get(role, [])),
        }
    return {"name": repo.name, "pending": sorted(repo.dirty), "roles": roles}


def _versions(repo: Repository) -> dict[str, int]:
    return {role: meta.signed.version for role, meta in repo.roles.items()}


def cmd_publish(args: argparse.Namespace) -> dict[str, Any]:
    ws = Workspace.open(args.workspace)
    written = ws.publish(args.out)
    return {"published": str(args.out), "files": len(written)}


def _ecu_states(items: Sequence[str]) -> dict[str, EcuState]:
    states = {}
    for item in items:
        serial, sep, rest = item.partition("=")
        hardware_id, _, counter = rest.partition(":")
        if not sep or not serial or not hardware_id:
            raise RepositoryToolError(f"--ecu must look like SERIAL=HWID[:COUNTER], got {item!r}")
        states[serial] = EcuState(hardware_id, _int(counter, "counter") if counter else 0)
    return states


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    try:
        roots = TrustedRoots(args.director_root.read_bytes(), args.image_root.read_bytes())
    except OSError as exc:
        raise RepositoryToolError(f"cannot read trusted root: {exc}") from exc
    ecus = _ecu_states(args.ecu)
    if args.director.startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory(prefix="redstone-verify-") as cache:
            director_url = args.director.rstrip("/") + "/metadata/"
            image_url = args.image.rstrip("/")
            config = PrimaryConfig(
                director_url, image_url + "/metadata/", image_url + "/targets/", Path(cache)
            )
            result = PrimaryVerifier(config, roots).refresh(ecus).verification
    else:
        bundle = MetadataBundle(
            {
                DIRECTOR: read_published(Path(args.director) / "metadata"),
                IMAGE: read_published(Path(args.image) / "metadata"),
            }
        )
        result = verify_full(bundle, roots, ecus=ecus)
    return {
        "director_targets_version": result.director_targets_version,
        "ecus": {
            serial: {
                "filename": t.filename,
                "length": t.length,
                "sha256": t.sha256,
                "hardware_id": t.hardware_id,
                "release_counter": t.release_counter,
                "delta_source_sha256": t.delta_source_sha256,
                "custom": dict(t.custom),
            }
            for serial, t in sorted(result.targets.items())
        },
    }


def _parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    _editing_commands(command)
    _signing_commands(command)
    _other_commands(command)
    return parser


def _editing_commands(command: _Command) -> None:
    """Commands that change what a repository says."""
    p = command("init", cmd_init, "create a repository workspace with fresh keys for every role")
    p.add_argument("workspace", type=Path, help=_WS_HELP)
    p.add_argument("--name", choices=(IMAGE, DIRECTOR), required=True, help="which repository")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519", help="key type")
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="ROLE=N",
        help="signatures a role needs (that many keys are made); default 1",
    )
    p.add_argument(
        "--expiry",
        action="append",
        default=[],
        metavar="ROLE=DAYS",
        help="lifetime of a role's metadata (ROLE may be 'delegated')",
    )

    p = command("add-target", cmd_add_target, "add an ECU image (unsigned until 'sign')")
    p.add_argument("workspace", type=Path, help=_WS_HELP)
    p.add_argument("file", type=Path, help="the image file")
    p.add_argument("--path", help="target name in the repository (default: file name)")
    p.add_argument(
        "--hardware-id", action="append", required=True, help="ECU hardware id (repeatable)"
    )
    p.add_argument("--release-counter", type=int, required=True, help="anti-rollback counter")
    p.add_argument("--version", help="human-readable version, kept as a custom field")
    p.add_argument(
        "--delta-source", metavar="SHA256", help="for a delta: sha256 of its source image"
    )
    p.add_argument("--role", default="targets", help="targets role to add to (e.g. a supplier)")

    p = command("delegate", cmd_delegate, "delegate target paths to a supplier role")
    p.add_argument("workspace", type=Path, help=_WS_HELP)
    p.add_argument("name", help="supplier role name")
    p.add_argument(
        "--path",
        dest="paths",
        action="append",
        required=True,
        metavar="PATTERN",
        help="glob of target paths the supplier may sign (repeatable)",
    )
    p.add_argument(
        "--public-key",
        type=Path,
        action="append",
        metavar="FILE",
        help="supplier's public key JSON (from 'key generate'); else keys are made here",
    )
    p.add_argument("--threshold", type=int, default=1, help="signatures required")
    p.add_argument("--parent", default="targets", help="delegating role")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519")


def _signing_commands(command: _Command) -> None:
    """Commands that sign, refresh and rotate keys."""
    p = command("assign", cmd_assign, "director: set a vehicle's ECU assignments")
    p.add_argument("workspace", type=Path, help="director workspace")
    p.add_argument("--image", type=Path, required=True, help="image repository workspace")
    p.add_argument(
        "--ecu",
        action="append",
        required=True,
        metavar="SERIAL=HWID:PATH",
        help="assign image PATH to ECU SERIAL of hardware HWID (repeatable)",
    )

    p = command(
        "sign", cmd_sign, "sign pending changes (or ROLEs) at new versions, then snapshot+timestamp"
    )
    p.add_argument("workspace", type=Path, help=_WS_HELP)
    p.add_argument(
        "roles", nargs="*", help="roles to re-sign even if unchanged (e.g. to renew expiry)"
    )
    p.add_argument(
        "--key", type=Path, action="append", default=[], help="extra private key file (offline key)"
    )

    p = command(
        "timestamp", cmd_timestamp, "refresh the timestamp (and with --snapshot the snapshot)"
    )
    p.add_argument("workspace", type=Path, help=_WS_HELP)
    p.add_argument("--snapshot", action="store_true", help="also re-sign the snapshot")
    p.add_argument("--key", type=Path, action="append", default=[], help="extra private key file")

    p = command(
        "rotate", cmd_rotate, "replace one key of a role (root: signed by old and new keys)"
    )
    p.add_argument("workspace", type=Path, help=_WS_HELP)
    p.add_argument("role")
    p.add_argument("old_keyid")
    p.add_argument("--new-key", type=Path, help="private key file to use (default: generate)")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519")
    p.add_argument("--key", type=Path, action="append", default=[], help="extra private key file")

    p = command(
        "key", cmd_key_generate, "generate a private key file (0600) and print its public key"
    )
    p.add_argument("file", type=Path, help="where to write the PEM private key")
    p.add_argument("--public", type=Path, help="also write the public key JSON here")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="ed25519")
    p.add_argument(
        "--pkcs11",
        metavar="URI",
        help="the key on a PKCS#11 token instead, made there if absent (--algorithm if the"
        " token has it, else ECDSA P-256): FILE then holds only the URI, and works wherever"
        " a key file does (docs/keys.md)",
    )


def _other_commands(command: _Command) -> None:
    """Read-only and publishing commands."""
    p = command("status", cmd_status, "show roles, versions, expiries, thresholds and keys")
    p.add_argument("workspace", type=Path, help=_WS_HELP)

    p = command("publish", cmd_publish, "write the servable tree (metadata/ and targets/)")
    p.add_argument("workspace", type=Path, help=_WS_HELP)
    p.add_argument("out", type=Path, help="output directory (static HTTP server or CDN root)")

    p = command("verify", cmd_verify, "verify a vehicle's assignments as a Primary would")
    p.add_argument(
        "--director", required=True, help="published director: directory or metadata URL"
    )
    p.add_argument(
        "--image", required=True, help="published image repository: directory or base URL"
    )
    p.add_argument("--director-root", type=Path, required=True, help="trusted director root.json")
    p.add_argument("--image-root", type=Path, required=True, help="trusted image root.json")
    p.add_argument(
        "--ecu",
        action="append",
        default=[],
        metavar="SERIAL=HWID[:COUNTER]",
        help="known ECU hardware id and installed release counter (repeatable)",
    )


def _print_human(result: dict[str, Any]) -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {json.dumps(v) if isinstance(v, dict | list) else v}")
        else:
            print(f"{key}: {value}")


def _dispatch(args: argparse.Namespace) -> dict[str, Any]:
    try:
        result: dict[str, Any] = args.func(args)
    except OSError as exc:  # a path the operator gave cannot be read or written
        raise RepositoryToolError(str(exc)) from exc
    return result


def execute(argv: Sequence[str]) -> dict[str, Any]:
    """Run one command in this process and return its result (what ``--json`` prints);
    an error raises (:class:`RepositoryToolError` or another ``RedstoneError``), bad
    arguments exit as argparse does. For a release desk that adds a dozen targets per
    release: each ``redstone-repo`` process spends about half a second importing."""
    return _dispatch(_parser().parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(PROG, args.verbose)

    def run() -> int:
        result = _dispatch(args)
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            _print_human(result)
        return 0

    return run_main(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
