"""The agent under systemd on aarch64 (issue 13, item 4): the target boards are ARM.

The vehicle image built for ``arm64`` (tools/qemu/vehicle/arm64.py: the same Debian base,
wheels for aarch64, the units of ``systemd/``) boots on QEMU's ``virt`` machine with
``-cpu cortex-a57``; systemd starts someipyd, redstone-sub and redstone-master from their
units, and both daemons answer on the system D-Bus. The Sub's slots are files on the
rootfs with a U-Boot env file (the bootloader itself is what the amd64 boards test).

Opt-in (``REDSTONE_AARCH64=1``): the first build runs debootstrap's second stage and pip
under qemu-user (~10 min) and a boot takes minutes of emulated ARM, too slow for the
15-minute CI. docs/yocto.md §"Testing on ARM" says how to run it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.qemu.vehicle.arm64 import build_arm64_image, missing_arm64, start
from tools.qemu.vehicle.guest import Guest
from tools.qemu.vehicle.image import IMAGE, derive

from redstone_agent.slots.bootloader.uboot import UBootEnv
from redstone_agent.slots.config import UBootConfig
from redstone_agent.slots.scheme import BootState
from redstone_agent.uptane.keys import generate_signer, save_signer
from redstone_agent.vvehicle.imagerepo import ImageRepo
from redstone_agent.vvehicle.plan import TBOX, VehiclePlan
from redstone_cloud import pki
from tests.system.vehicle_world import (
    BODY,
    guest_master_files,
    offline_master_toml,
    someipyd_json,
    sub_toml,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("REDSTONE_AARCH64") != "1",
        reason="opt-in: set REDSTONE_AARCH64=1 (emulated ARM: ~10 min cold, minutes per boot)",
    ),
]

PLAN = VehiclePlan(ecus=(TBOX, BODY), model="qemu-arm64")
ETC = Path("/etc/redstone")
TRUST = ETC / "trust"
STATE = Path("/var/lib/redstone")
SLOT_BYTES = 8 << 20
ENV_BYTES = 0x4000
BOARD_ENV = Path(__file__).resolve().parents[2] / "etc" / "u-boot" / "qemu-x86.env"
BOOT_S = 1200.0
DAEMONS = ("someipyd.service", "redstone-sub.service", "redstone-master.service")
TIMINGS: dict[str, float] = {}


def sub_config() -> str:
    """The Sub of this node: file slots and a file env on the rootfs, no health check."""
    slots = (str(STATE / "slots" / "A.img"), str(STATE / "slots" / "B.img"))
    return sub_toml(None, slots=slots, fw_env_config=str(ETC / "fw_env.config"))


def master_config() -> str:
    """No cloud answers there: the Master runs, polls, fails and says so."""
    files = guest_master_files()
    assert files.state_dir == STATE / "master"
    return offline_master_toml(PLAN, files)


def provisioning(workdir: Path) -> dict[str, bytes]:
    """What the factory puts on this node: configs, keys, trust roots, slots and env."""
    roots = {}
    for name in ("director", "image"):
        repo = ImageRepo(workdir / name)
        repo.init()
        roots[name] = repo.root.read_bytes()
    ca_key = pki.new_ca_key()
    ca = pki.create_root_ca("redstone smoke CA", ca_key)
    client_key = pki.new_ca_key()
    csr = pki.load_csr(_csr(client_key, PLAN.vin))
    cert = pki.issue_device_certificate(csr, PLAN.vin, ca, ca_key)
    keys = {}
    for role in ("tbox", "body"):
        path = workdir / f"{role}.pem"
        save_signer(generate_signer(), path)
        keys[role] = path.read_bytes()
    env = workdir / "uboot.env"
    env.write_bytes(bytes(ENV_BYTES))
    host_config = workdir / "fw_env.config"
    host_config.write_text(f"{env} 0x0 {ENV_BYTES:#x}\n")
    UBootEnv(UBootConfig(fw_env_config=host_config, defaults=BOARD_ENV)).initialise(
        BootState.factory("A").to_env()
    )
    return {
        str(ETC / "master.toml"): master_config().encode(),
        str(ETC / "sub.toml"): sub_config().encode(),
        str(ETC / "someipyd.json"): someipyd_json().encode(),
        str(ETC / "fw_env.config"): f"{STATE / 'uboot.env'} 0x0 {ENV_BYTES:#x}\n".encode(),
        str(STATE / "uboot.env"): env.read_bytes(),
        str(STATE / "slots" / "A.img"): bytes(SLOT_BYTES),
        str(STATE / "slots" / "B.img"): bytes(SLOT_BYTES),
        str(TRUST / "director.root.json"): roots["director"],
        str(TRUST / "image.root.json"): roots["image"],
        str(TRUST / "cloud-ca.pem"): pki.cert_pem(ca).encode(),
        str(TRUST / "client.pem"): pki.cert_pem(cert).encode(),
        str(TRUST / "client.key"): pki.key_to_pem(client_key),
        str(TRUST / "tbox.pem"): keys["tbox"],
        str(TRUST / "body.pem"): keys["body"],
    }


def _csr(key: pki.CaKey, vin: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vin)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    reason = missing_arm64()
    if reason is not None:
        pytest.skip(f"aarch64 guest cannot run: {reason}")
    started = time.monotonic()
    image_dir = build_arm64_image()
    TIMINGS["image_s"] = time.monotonic() - started
    workdir = tmp_path_factory.mktemp("arm64")
    disk = derive(image_dir / IMAGE, workdir / "disk.img", provisioning(workdir))
    running = start(image_dir, disk, workdir / "boot-1.log")
    try:
        TIMINGS["boot_to_channel_s"] = running.wait_ready(BOOT_S)
        yield running
    finally:
        running.kill()
        print(f"aarch64 smoke timings: {json.dumps(TIMINGS)}")


def _settled(guest: Guest, timeout: float = 900.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {u: guest.run(f"systemctl show -P ActiveState {u}").out.strip() for u in DAEMONS}
        if "activating" not in states.values() or time.monotonic() > deadline:
            return states
        time.sleep(5)


def test_the_agent_runs_under_systemd_on_aarch64(guest: Guest) -> None:
    started = time.monotonic()
    states = _settled(guest)
    TIMINGS["daemons_settled_s"] = time.monotonic() - started

    assert guest.check("uname -m").strip() == "aarch64"
    assert guest.check("/opt/redstone/bin/python3 -c 'import platform; print(platform.machine())'")
    assert states == dict.fromkeys(DAEMONS, "active"), guest.run(
        "systemctl status --no-pager " + " ".join(DAEMONS)
    ).out[-4000:]
    names = guest.check("busctl --system list --no-pager --no-legend")
    assert "org.redstone.Master" in names and "org.redstone.Sub" in names, names
    sub = json.loads(guest.check("redstonectl --service sub status --json"))
    assert sub["state"] == "IDLE", sub
    master = json.loads(guest.check("redstonectl status --json"))
    assert "state" in master, master
    # The compiled extensions of the wheels are the aarch64 builds and load.
    loaded = guest.check(
        "/opt/redstone/bin/python3 -c 'import cryptography.hazmat.bindings._rust, "
        'zstandard, dbus_fast, bsdiff4; print("ok")\''
    )
    assert loaded.strip() == "ok", loaded
