"""``redstone-repo`` with offline keys on PKCS#11 tokens (real SoftHSM2 tokens).

The image repository's root needs two signatures; each root key is moved onto
its own token, as two officers each holding one. Signing then needs both
tokens, the workspace keeps only the keys' URIs, and a client holding the old
root accepts the new one. A token that refuses its PIN stops signing with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root

from redstone_agent.pkcs11 import uri
from redstone_agent.pkcs11.token import TokenKey
from tests.softhsm import SoftHsm, make_tokens

BIN = Path(sys.executable).parent


def repo(
    cwd: Path, *args: str, ok: bool = True, env: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``redstone-repo ARGS``; ``env``: another SoftHSM2 config for it to load."""
    extra = {"SOFTHSM2_CONF": str(env)} if env is not None else {}
    env_vars = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **extra}
    done = subprocess.run(
        ["redstone-repo", *args],
        cwd=cwd,
        env=env_vars,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode == 0) == ok, (args, done.stdout, done.stderr)
    return done


def repo_json(cwd: Path, *args: str) -> Any:
    return json.loads(repo(cwd, "--json", *args).stdout)


def test_root_threshold_two_with_each_key_on_its_own_token(
    tmp_path: Path, softhsm: SoftHsm
) -> None:
    repo(tmp_path, "init", "image-ws", "--name", "image", "--threshold", "root=2")
    first_root = Metadata[Root].from_file(
        str(tmp_path / "image-ws" / "metadata" / "root_history" / "1.root.json")
    )
    old = list(first_root.signed.roles["root"].keyids)
    officers = {}
    for name, token in (("a", "token-a"), ("b", "token-b")):
        public = repo_json(
            tmp_path, "key", f"root-{name}.key", "--pkcs11", softhsm.uri(token, "repo-root")
        )
        officers[name] = public["keyid"]
        assert public["scheme"] == "ed25519"  # --algorithm's default, which SoftHSM2 has
        held = (tmp_path / f"root-{name}.key").read_text()
        assert held.startswith(f"pkcs11:token={token};object=repo-root?") and "KEY" not in held
    for keyid, name in zip(old, ("a", "b"), strict=True):
        repo(tmp_path, "rotate", "image-ws", "root", keyid, "--new-key", f"root-{name}.key")

    (tmp_path / "fw.bin").write_bytes(b"firmware")
    repo(
        tmp_path,
        "add-target",
        "image-ws",
        "fw.bin",
        "--hardware-id",
        "hw",
        "--release-counter",
        "1",
    )
    repo(tmp_path, "sign", "image-ws")
    repo(tmp_path, "publish", "image-ws", "published")

    history = sorted((tmp_path / "image-ws" / "metadata" / "root_history").glob("*.root.json"))
    newest = Metadata[Root].from_file(str(history[-1]))
    assert set(newest.signed.roles["root"].keyids) == set(officers.values())
    assert newest.signed.roles["root"].threshold == 2
    assert set(officers.values()) <= set(newest.signatures)
    trusted = first_root
    for path in history[1:]:  # what a client holding version 1 does, one version at a time
        following = Metadata[Root].from_file(str(path))
        trusted.signed.verify_delegate("root", following.signed_bytes, following.signatures)
        following.signed.verify_delegate("root", following.signed_bytes, following.signatures)
        trusted = following
    stored = list((tmp_path / "image-ws" / "keys" / "root").glob("*.pem"))
    assert {p.stem for p in stored} == set(officers.values())
    assert all(p.read_text().startswith("pkcs11:") for p in stored)

    # Officer b's token now refuses: the PIN file it reads holds a stale PIN.
    wrong = tmp_path / "stale.pin"
    wrong.write_text("0000\n")
    key_b = tmp_path / "image-ws" / "keys" / "root" / f"{officers['b']}.pem"
    key_b.write_text(key_b.read_text().replace(str(softhsm.pin_file), str(wrong)))
    refused = repo(tmp_path, "sign", "image-ws", "root", ok=False)
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "token-b" in refused.stderr and "wrong PIN" in refused.stderr
    assert "0000" not in refused.stderr


def test_a_token_without_eddsa_gets_a_p256_key_and_an_explicit_p256_is_kept(
    tmp_path: Path, softhsm: SoftHsm
) -> None:
    """docs/keys.md §2: Ed25519 where the token can make and sign with one, ECDSA P-256
    otherwise. The limited token is SoftHSM2 offering only P-256 ECDSA, as a typical
    secure element (``slots.mechanisms``), in a process of its own: a module reads its
    config once."""
    limited = make_tokens(tmp_path / "limited", ("no-eddsa",))
    with limited.open("a") as conf:
        conf.write("slots.mechanisms = CKM_EC_KEY_PAIR_GEN,CKM_ECDSA\n")
    where = softhsm.uri("no-eddsa", "ecu-key")
    public = json.loads(
        repo(tmp_path, "--json", "key", "fallback.key", "--pkcs11", where, env=limited).stdout
    )
    assert public["scheme"] == "ecdsa-sha2-nistp256"

    asked = softhsm.uri("spare", "asked-p256")
    public = repo_json(tmp_path, "key", "p256.key", "--pkcs11", asked, "--algorithm", "ecdsa-p256")
    assert public["scheme"] == "ecdsa-sha2-nistp256"
    held = TokenKey(uri.parse(asked))
    try:  # made on the token, never to leave it
        assert held.attribute("SENSITIVE") and not held.attribute("EXTRACTABLE")
    finally:
        held.close()
