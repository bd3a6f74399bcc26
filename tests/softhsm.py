"""Real SoftHSM2 tokens for tests (Debian's softhsm2: a PKCS#11 module, not a mock).

SoftHSM reads ``SOFTHSM2_CONF`` and scans its token directory once, when a
process first loads the module; a token made later is invisible to that
process. So one session-wide directory gets every token the suite uses, made
with ``softhsm2-util`` before any test loads the module, and each test takes
tokens by label. Subprocesses (the CLI run for real) load it afresh.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import require_tool

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "2718"
SO_PIN = "31415926"
TOKENS = ("token-a", "token-b", "spare", "tbox-tls")
"""Every token label a test may use (made up front, see above). ``tbox-tls`` holds only
the TLS tunnel's key: OpenSSL's pkcs11 engine (libp11 0.4.12) finds no key on a token
that also holds an Ed25519 one (docs/keys.md §2)."""


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    pin_file: Path

    def uri(self, token: str, key: str, *, pin: bool = True) -> str:
        query = f"module-path={MODULE}" + (f"&pin-source=file:{self.pin_file}" if pin else "")
        return f"pkcs11:token={token};object={key}?{query}"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf), **extra}


def make_tokens(root: Path, labels: tuple[str, ...]) -> Path:
    """A SoftHSM2 config whose token directory holds freshly initialised ``labels``."""
    tokens = root / "tokens"
    tokens.mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    for label in labels:
        subprocess.run(
            [
                require_tool("softhsm2-util"),
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ],
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
            check=True,
            capture_output=True,
        )
    return conf


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    if not MODULE.exists():
        pytest.skip(f"{MODULE} missing: install softhsm2 (see tools/debian-packages.txt)")
    root = tmp_path_factory.mktemp("softhsm")
    conf = make_tokens(root, TOKENS)
    pin_file = root / "user.pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    yield SoftHsm(conf, pin_file)
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before
