"""A real software TPM as a second PKCS#11 token (Debian's swtpm with tpm2-pkcs11).

``swtpm`` emulates a TPM 2.0 (libtpms) on two TCP sockets, commands on port N and
its control channel on N+1; tpm2-pkcs11 reaches it through the TSS's swtpm TCTI
(``TPM2_PKCS11_TCTI=swtpm:host=127.0.0.1,port=N``) and keeps its tokens' metadata
and wrapped key blobs in a SQLite store (``TPM2_PKCS11_STORE``). Debian 12 does not
package ``tpm2_ptool``, so the tokens are made through PKCS#11 itself: tpm2-pkcs11
always offers one empty slot, on which ``C_InitToken`` makes a token and the SO's
``C_InitPIN`` sets its user PIN (python-pkcs11 0.10 has no ``C_InitToken``, so a
short ctypes script does it). Like SoftHSM, tpm2-pkcs11 lists its tokens when a
process first loads it, so every token is made up front, in a subprocess.

No resource manager sits between tpm2-pkcs11 and swtpm (a TBox has the kernel's,
``/dev/tpmrm0``), so the TPM's three transient object slots are all a process gets:
a logged-in token holds its primary key and each key in use, so a third key held
open at once, or logging in to the other token meanwhile, fails (docs/keys.md §9).
Tests close their keys.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import require_tool

MODULE = Path("/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so")
PIN = "2718"
SO_PIN = "31415926"
TOKENS = ("tpm-a", "tpm-b")

_INIT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
ul = ctypes.c_ulong
def call(name, *args):
    rv = getattr(lib, name)(*args)
    if rv:
        sys.exit(f"{name} failed: CKR 0x{rv:x}")
so_pin, pin = sys.argv[2].encode(), sys.argv[3].encode()
call("C_Initialize", None)
for label in sys.argv[4:]:
    count = ul(0)
    call("C_GetSlotList", ctypes.c_ubyte(0), None, ctypes.byref(count))
    slots = (ul * count.value)()
    call("C_GetSlotList", ctypes.c_ubyte(0), slots, ctypes.byref(count))
    slot = ul(slots[count.value - 1])  # tpm2-pkcs11's one empty slot comes last
    call("C_InitToken", slot, so_pin, ul(len(so_pin)), label.encode().ljust(32))
    session = ul(0)
    call("C_OpenSession", slot, ul(0x6), None, None, ctypes.byref(session))  # RW | SERIAL
    call("C_Login", session, ul(0), so_pin, ul(len(so_pin)))  # CKU_SO
    call("C_InitPIN", session, pin, ul(len(pin)))
    call("C_Logout", session)
    call("C_CloseSession", session)
call("C_Finalize", None)
"""


@dataclass
class Emulator:
    """One swtpm process listening on 127.0.0.1, ``port`` and ``port + 1``."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def _free_port_pair() -> int:
    """A port N with N and N+1 free on 127.0.0.1 (the swtpm TCTI finds control at N+1)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two adjacent free TCP ports on 127.0.0.1")


def start_emulator(root: Path, port: int | None = None) -> Emulator:
    """A swtpm whose state lives under ``root`` (fresh, or what an earlier one there
    left: the same TPM started again), started up (TPM2_Startup done); on ``port`` if
    given, else on free ones.

    swtpm 0.7.1 resets connections on a listening socket handed over as ``fd=``, so it
    binds the ports itself; one another process took meanwhile means another try."""
    state = root / "state"
    state.mkdir(parents=True, exist_ok=True)
    log = root / "swtpm.log"
    wanted = port
    for _ in range(5):
        port = wanted if wanted is not None else _free_port_pair()
        process = subprocess.Popen(
            [
                require_tool("swtpm"),
                "socket",
                "--tpm2",
                "--server",
                f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--tpmstate",
                f"dir={state}",
                "--flags",
                "not-need-init,startup-clear",
                "--log",
                f"file={log}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        emulator = Emulator(process, port, log)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port + 1), timeout=1):
                    return emulator
            except OSError:
                time.sleep(0.05)
        emulator.stop()
    raise RuntimeError(f"swtpm did not start: {log.read_text() if log.exists() else ''}")


def tpm_env(emulator: Emulator, store: Path) -> dict[str, str]:
    """What tpm2-pkcs11 reads: which TPM, where its store is; the TSS kept quiet."""
    return {
        "TPM2_PKCS11_TCTI": emulator.tcti,
        "TPM2_PKCS11_STORE": str(store),
        "TSS2_LOG": "all+NONE",
    }


def make_tokens(emulator: Emulator, store: Path, labels: tuple[str, ...]) -> None:
    """Initialise ``labels`` on the emulated TPM, each with ``SO_PIN`` and user ``PIN``."""
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", _INIT, str(MODULE), SO_PIN, PIN, *labels],
        env={**os.environ, **tpm_env(emulator, store)},
        check=True,
        capture_output=True,
        timeout=60,
    )


@dataclass
class SwTpm:
    emulator: Emulator
    store: Path
    pin_file: Path

    def uri(self, token: str, key: str, *, pin: bool = True) -> str:
        query = f"module-path={MODULE}" + (f"&pin-source=file:{self.pin_file}" if pin else "")
        return f"pkcs11:token={token};object={key}?{query}"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **tpm_env(self.emulator, self.store), **extra}


def require_swtpm() -> None:
    """Skip, naming the package, unless swtpm and tpm2-pkcs11 are installed."""
    if not MODULE.exists():
        pytest.skip(f"{MODULE} missing: install libtpm2-pkcs11-1 (see tools/debian-packages.txt)")
    require_tool("swtpm")


@pytest.fixture(scope="session")
def swtpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwTpm]:
    require_swtpm()
    root = tmp_path_factory.mktemp("swtpm")
    with ExitStack() as stack:
        emulator = start_emulator(root)
        stack.callback(emulator.stop)
        store = root / "store"
        make_tokens(emulator, store, TOKENS)
        pin_file = root / "user.pin"
        pin_file.write_text(PIN + "\n")
        pin_file.chmod(0o600)
        variables = tpm_env(emulator, store)
        before = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)  # read when this process first loads the module
        try:
            yield SwTpm(emulator, store, pin_file)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
