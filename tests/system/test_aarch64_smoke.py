"""The agent under systemd on aarch64 (issue 13, item 4): the target boards are ARM.

The vehicle image built for ``arm64`` (tools/qemu/vehicle/arm64.py: the same Debian base,
wheels for aarch64, the units of ``systemd/``) boots on QEMU's ``virt`` machine with
``-cpu cortex-a57``; systemd starts someipyd, redstone-sub and redstone-master from their
units, and both daemons answer on the system D-Bus. The Sub's slots are files on the
rootfs with a U-Boot env file (the bootloader itself is what the amd64 boards test).
The guest has no command channel: a oneshot unit added at provisioning waits for the
daemons, prints what it finds on the console (``SMOKE <what>: <value>`` lines) and
powers off; the test reads the console.

The units run as shipped: no timeout is stretched for emulation. Measured here (2 cores,
-smp 2): the Sub READY 10 s and the Master 13-15 s after their start, boot to power-off 95 s.

Opt-in (``REDSTONE_AARCH64=1``): the first build runs debootstrap's second stage under
qemu-user (~20 min), and every change to ``src/`` rebuilds the image layer (pip under
qemu-user, ~4.5 min): too slow for the 15-minute CI. docs/yocto.md §"Testing on ARM"
says how to run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from tools.qemu.run import run
from tools.qemu.vehicle.arm64 import boot, build_arm64_image, missing_arm64
from tools.qemu.vehicle.image import IMAGE, derive, guest_uid

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
    pytest.mark.opt_in,
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
BOOT_S = 2400.0
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


SMOKE_SCRIPT = b"""#!/bin/sh
# The aarch64 smoke's findings, on the console (tests/system/test_aarch64_smoke.py).
daemons="someipyd redstone-sub redstone-master"
say() { echo "SMOKE $1: $2" > /dev/console; }
for minute in $(seq 1 25); do
    states=$(systemctl show -P ActiveState $daemons | tr '\\n' ' ')
    case "$states" in *activating*) ;; *) break ;; esac
    say "waiting $minute min" "$states"
    sleep 60
done
say units "$states"
for unit in $daemons; do
    # Activation took this long (start job to READY), in emulated ARM.
    start=$(systemctl show -P ExecMainStartTimestampMonotonic "$unit")
    ready=$(systemctl show -P ActiveEnterTimestampMonotonic "$unit")
    say "ready_s $unit" "$(( (ready - start) / 1000000 ))"
    case "$(systemctl show -P ActiveState "$unit")" in
    active) ;;
    *) journalctl -b -u "$unit" --no-pager -n 40 | sed "s/^/SMOKELOG $unit: /" > /dev/console ;;
    esac
done
say arch "$(uname -m)"
names=$(busctl --system list --no-legend | awk '{print $1}' | grep org.redstone)
say names "$(echo $names)"
say sub "$(redstonectl --service sub status --json | tr -d '\\n')"
say master "$(redstonectl status --json | tr -d '\\n')"
modules="cryptography.hazmat.bindings._rust, zstandard, dbus_fast, bsdiff4"
say extensions "$(/opt/redstone/bin/python3 -c "import $modules; print('loaded')" 2>&1 | tail -1)"
say done yes
systemctl poweroff
"""
SMOKE_UNIT = b"""[Unit]
Description=aarch64 smoke: report the daemons on the console, then power off
After=dbus.service
[Service]
Type=oneshot
ExecStart=/usr/lib/redstone-test/smoke
[Install]
WantedBy=multi-user.target
"""


def smoke_files() -> dict[str, bytes]:
    return {
        "/usr/lib/redstone-test/smoke": SMOKE_SCRIPT,
        SMOKE_UNIT_PATH: SMOKE_UNIT,
    }


SMOKE_UNIT_PATH = "/etc/systemd/system/redstone-smoke.service"


def set_owners_and_modes(disk: Path, image_dir: Path) -> None:
    """What derive() cannot say: the keys private to their daemon (each refuses a key
    others can read), the smoke script executable, the smoke unit enabled (systemd
    ignores a .wants entry that is not a symlink)."""
    master = guest_uid(image_dir, "redstone-master")
    commands = [
        "sif /usr/lib/redstone-test/smoke mode 0100755",
        "mkdir /etc/systemd/system/multi-user.target.wants",
        f"symlink /etc/systemd/system/multi-user.target.wants/redstone-smoke.service "
        f"{SMOKE_UNIT_PATH}",
    ]
    for key, owner in (("tbox.pem", master), ("client.key", master), ("body.pem", 0)):
        path = TRUST / key
        commands += [
            f"sif {path} mode 0100600",
            f"sif {path} uid {owner}",
            f"sif {path} gid {owner}",
        ]
    script = disk.with_name("owners.debugfs")
    script.write_text("\n".join(commands) + "\n")
    run(["debugfs", "-w", "-f", script, disk])


def daemon_journal(disk: Path, workdir: Path) -> str:
    """The daemons' journal of the boot (kept on the rootfs), for a failure's report."""
    into = workdir / "journal"
    into.mkdir()
    run(["debugfs", "-R", f"rdump {STATE / 'journal'} {into}", disk])
    units = [f"--unit={unit}" for unit in ("someipyd", "redstone-sub", "redstone-master")]
    machines = sorted((into / "journal").glob("*"))  # one directory per machine id
    if not machines:
        return "\n(no journal on the disk)"
    shown = subprocess.run(
        ["journalctl", "--directory", str(machines[0]), "--no-pager", "-n", "150", *units],
        capture_output=True,
        text=True,
        check=False,
    )
    return "\n--- the daemons' journal ---\n" + shown.stdout + shown.stderr


def findings(console: str) -> dict[str, str]:
    found = {}
    for line in console.splitlines():
        start = line.find("SMOKE ")
        if start >= 0 and ": " in line[start:]:
            what, _, value = line[start + len("SMOKE ") :].partition(": ")
            found[what] = value.strip()
    return found


def test_the_agent_runs_under_systemd_on_aarch64(tmp_path: Path) -> None:
    reason = missing_arm64()
    if reason is not None:
        pytest.skip(f"aarch64 guest cannot run: {reason}")
    started = time.monotonic()
    image_dir = build_arm64_image()
    TIMINGS["image_s"] = time.monotonic() - started
    files = {**provisioning(tmp_path), **smoke_files()}
    disk = derive(image_dir / IMAGE, tmp_path / "disk.img", files)
    set_owners_and_modes(disk, image_dir)
    booted = time.monotonic()
    console = boot(image_dir, disk, tmp_path / "boot-1.log", BOOT_S)
    TIMINGS["boot_to_poweroff_s"] = time.monotonic() - booted
    found = findings(console)
    for what, value in found.items():
        if what.startswith("ready_s ") and value.isdigit():
            TIMINGS[what.replace(" ", "_")] = float(value)
    print(f"aarch64 smoke timings: {json.dumps(TIMINGS)}")

    assert found.get("done") == "yes", console[-3000:] + daemon_journal(disk, tmp_path)
    assert found["arch"] == "aarch64", found
    assert found["units"].split() == ["active"] * 3, found
    assert found["names"].split() == ["org.redstone.Master", "org.redstone.Sub"], found
    assert json.loads(found["sub"])["state"] == "IDLE", found
    assert "state" in json.loads(found["master"]), found
    assert found["extensions"] == "loaded", found
