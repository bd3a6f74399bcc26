"""The host side of the vehicle-guest tests: a real cloud, the vehicle registered, releases,
campaigns and offline bundles, and the guest's factory provisioning.

Built from the virtual vehicle's parts (``redstone_agent.vvehicle``: the cloud on a
loopback address, the operator's API client, the offline image repository, the plan's
config writers), for a vehicle of three ECUs:

* ``tbox`` — the Master (``redstone-master.service`` in the guest);
* ``body`` — a Sub: the guest itself (``someipyd`` + ``redstone-sub.service`` owning
  /dev/vda2 and /dev/vda3 with the U-Boot backend), on loopback with the Master;
* ``bcm`` — a UDS ECU on DoCAN: ``redstone-ecusim`` on the guest's ``vcan0``.

The guest has no network: campaigns reach it as offline bundles on a "USB stick"
(``redstone-cloud bundle``, docs/bundle.md). The guest's per-vehicle files (configs,
keys, trust roots, the Sub's factory journal) go onto its data partition, as a factory
provisions a vehicle; :func:`factory_tree` writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tools.qemu.board import Board
from tools.qemu.vehicle.board import make_stick, write_data_partition
from tools.qemu.vehicle.image import IMAGE, JOURNAL, guest_gid, guest_uid

from redstone_agent.journal import Journal
from redstone_agent.master.topology import EcuKind
from redstone_agent.sub.engine import Record
from redstone_agent.sub.health import BOOT_COMPLETE
from redstone_agent.uptane.keys import generate_signer, public_key_to_dict, save_signer
from redstone_agent.uptane.manifests import EcuManifest, sign_ecu_manifest, sign_vehicle_manifest
from redstone_agent.uptane.tufapi import CryptoSigner
from redstone_agent.vvehicle.cloud import Cloud
from redstone_agent.vvehicle.imagerepo import ImageRepo
from redstone_agent.vvehicle.images import image as uds_image
from redstone_agent.vvehicle.netlab import Lab, executable, open_lab
from redstone_agent.vvehicle.operator import Device, Operator
from redstone_agent.vvehicle.plan import (
    BCM,
    SECURITY_MASK,
    TBOX,
    UDS_REGION,
    VERSION_LENGTH,
    EcuPlan,
    MasterFiles,
    VehiclePlan,
    master_toml,
)
from redstone_agent.vvehicle.vehicle import _tls_key_and_csr
from tests.system.offline_release import OfflineRelease, cached_release

BODY = EcuPlan("body", EcuKind.SUB, "guest", instance_id=1)
PLAN = VehiclePlan(ecus=(TBOX, BODY, BCM), model="qemu-vehicle")
FACTORY = "1.0.0"
GUEST_IP = "127.0.0.1"
"""Master, Sub, someipyd and the Master's cache server all on the guest's loopback."""
ETC = Path("/etc/redstone")
TRUST = ETC / "trust"
SUB_PORT = 30510
NRC_STORM: dict[str, object] = {"pending_storm": 4, "pending_interval": 0.02, "busy_repeat": 2}
"""The BCM's faults in the NRC-storm scenario: four 0x78 (response pending) before each
final answer to RoutineControl and TransferData, two 0x21 (busy) to RequestDownload."""


def _q(value: object) -> str:
    return json.dumps(str(value))


@dataclass
class World:
    """The cloud, the image repository and the vehicle's identities (host side)."""

    workdir: Path
    lab: Lab
    cloud: Cloud
    repo: ImageRepo
    signers: dict[str, CryptoSigner]
    client_key: Path
    client_cert: Path
    director_root: bytes
    plan: VehiclePlan
    uploaded: set[str] = field(default_factory=set)
    campaigns: list[str] = field(default_factory=list)

    def operator(self) -> Operator:
        return Operator(self.cloud.client(), self.cloud.admin_token)

    def device(self) -> Device:
        return Device(self.cloud.client(cert=(self.client_cert, self.client_key)))

    def close(self) -> None:
        self.lab.close()

    # -- releases, campaigns, bundles -------------------------------------------------------

    def release(self, ecu: EcuPlan, version: str, file: Path, counter: int) -> str:
        """Upload ``file`` as package ``role``/``version`` and sign it offline; its target."""
        target = ecu.target(version)
        if target in self.uploaded:
            return target
        with self.operator() as op:
            op.upload_package(ecu.role, version, ecu.hardware_id, file.read_bytes(), counter)
            self.repo.add_image(file, target, ecu.hardware_id, counter, version)
            op.upload_image_repo(self.repo.sign())
        self.uploaded.add(target)
        return target

    def sign_deltas(
        self, images: dict[str, Path], wanted: set[tuple[str, str]] | None = None
    ) -> list[str]:
        """Wait for the backend's delta jobs, check each delta rebuilds its image and sign
        it offline (as the virtual vehicle's release does); the signed targets. ``images``
        maps each package target to its file; ``wanted`` limits the signing to those
        (from target, to target) pairs: checking a 288 MiB delta costs seconds, and an
        unsigned delta is never offered."""
        signed: list[str] = []
        with self.operator() as op:
            op.wait_deltas(timeout=600)
            packages = {p["target"]: p for p in op.packages()}
            jobs = {
                (job["from_target"], job["to_target"]): str(job["delta_target"])
                for job in op.call("GET", "/api/v1/deltas")
                if job.get("delta_target")
            }
            pairs = sorted(jobs if wanted is None else wanted)
            assert set(pairs) <= jobs.keys(), f"no delta made for {set(pairs) - jobs.keys()}"
            for pair in pairs:
                target = jobs[pair]
                if target in self.uploaded:
                    continue
                package = packages[target]
                file = op.download(target, self.workdir / target)
                old, new = images[pair[0]], images[pair[1]]
                self.repo.add_delta(
                    file,
                    target,
                    package["hardware_ids"][0],
                    package["release_counter"],
                    old=old.read_bytes(),
                    new=new.read_bytes(),
                    source_sha256=file_facts(old)[1],
                )
                self.uploaded.add(target)
                signed.append(target)
            op.upload_image_repo(self.repo.sign())
        return signed

    def campaign(self, targets: list[str]) -> str:
        """Start a campaign moving the vehicle to ``targets``; its name."""
        name = f"qemu-{len(self.campaigns) + 1}"
        body = {
            "name": name,
            "targeting": {"vins": [self.plan.vin]},
            "packages": targets,
            "groups": [{"percent": 100, "success_threshold": 100, "error_threshold": 100}],
            "consent_required": False,
        }
        with self.operator() as op:
            op.create_campaign(body)
            op.start_campaign(name)
        self.campaigns.append(name)
        return name

    def bundle(self, campaign: str, output: Path) -> dict[str, object]:
        """``redstone-cloud bundle VIN --campaign NAME -o FILE``: its JSON summary."""
        out = self.cloud.node.run(
            [
                executable("redstone-cloud"),
                "--config",
                str(self.cloud.config),
                "--json",
                "bundle",
                self.plan.vin,
                "--campaign",
                campaign,
                "--output",
                str(output),
            ],
            timeout=300,
        )
        summary = json.loads(out.strip().splitlines()[-1])
        assert isinstance(summary, dict)
        return summary

    def report(self, installed: dict[str, tuple[str, int, str, int]]) -> object:
        """Send the signed vehicle manifest the Master sends when it is next online:
        serial -> (target, length, sha256, release counter); the assignment's outcome.
        Tells the cloud what the BCM runs (so bundles carry its rollback image, docs/
        bundle.md §1.4) and settles a campaign the guest finished offline."""
        with self.device() as device:
            nonce = str(device.client.post("/api/v1/device/nonce").json()["nonce"])
            envelopes = {}
            for ecu in self.plan.ecus:
                target, length, sha256, counter = installed[ecu.serial]
                report = EcuManifest(ecu.serial, target, length, sha256, counter, nonce=nonce)
                envelopes[ecu.serial] = sign_ecu_manifest(report, self.signers[ecu.role])
            data = sign_vehicle_manifest(
                self.plan.vin, TBOX.serial, nonce, envelopes, self.signers[TBOX.role]
            )
            response = device.client.post("/api/v1/device/manifest", content=data)
        if response.status_code != 200:
            raise AssertionError(f"manifest refused: {response.status_code} {response.text}")
        return response.json().get("assignment")


def build_world(workdir: Path, plan: VehiclePlan = PLAN) -> World:
    """Cloud up, image repository made, the vehicle of ``plan`` registered with a TLS
    identity."""
    # Its own network namespace: other suites run clouds on 127.0.0.x:8443 meanwhile.
    lab = open_lab(workdir / "lab", ["cloud"], isolated=True)
    lab.__enter__()
    try:
        cloud = Cloud(lab.nodes["cloud"], workdir / "cloud")
        cloud.start()
        repo = ImageRepo(workdir / "image-repo")
        repo.init()
        signers = {e.role: generate_signer() for e in plan.ecus}
        ids = workdir / "identity"
        ids.mkdir(parents=True, exist_ok=True)
        with Operator(cloud.client(), cloud.admin_token) as op:
            op.create_model(plan.model_json())
            keys = {e.serial: public_key_to_dict(signers[e.role].public_key) for e in plan.ecus}
            op.register_vehicle(plan.vehicle_json(keys))
            key, csr = _tls_key_and_csr(ids / "client.key", plan.vin)
            cert = ids / "client.pem"
            cert.write_text(op.issue_certificate(plan.vin, csr))
        with Device(cloud.client(cert=(cert, key))) as device:
            root = device.director_root(plan.vin)
    except (Exception, KeyboardInterrupt):
        lab.close()
        raise
    return World(workdir, lab, cloud, repo, signers, key, cert, root, plan)


def uds_file(workdir: Path, version: str) -> Path:
    """The BCM's image of ``version`` (the virtual vehicle's deterministic images)."""
    path = workdir / "images" / BCM.target(version)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(uds_image(BCM, version))
    return path


def file_facts(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


# -- the guest's factory provisioning ---------------------------------------------------------


def _docan() -> str:
    """The BCM's DoCAN link on the guest's kernel vcan0 (python-can socketcan)."""
    return (
        "[docan]\n"
        'interface = "socketcan"\n'
        'channel = "vcan0"\n'
        "tx_id = 0x7E0\n"
        "rx_id = 0x7E8\n"
        "block_size = 0\n"
    )


def _region() -> str:
    name, address, size = UDS_REGION
    return f"name = {_q(name)}\naddress = {address:#x}\nsize = {size:#x}\n"


def bcm_tester_toml() -> str:
    return (
        'name = "bcm"\ntransport = "docan"\n'
        + _docan()
        + f'[security]\nparams = {{ mask = "{SECURITY_MASK}" }}\n'
        + "[timing]\np2 = 2.0\n"
        + '[programming]\ndual_bank = true\ncompression = "zlib"\nreset_settle = 0.3\n'
        + f"[[regions]]\n{_region()}"
    )


def bcm_sim_toml(version: str, faults: dict[str, object]) -> str:
    fault_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in sorted(faults.items()))
    return (
        'name = "bcm"\nerase_time = 0.05\n'
        + _docan()
        + f'[security]\nparams = {{ mask = "{SECURITY_MASK}" }}\n'
        + "[memory]\ndual_bank = true\nversion_offset = 0\n"
        + f"version_length = {VERSION_LENGTH}\ninitial_version = {_q(version)}\n"
        + f"[[memory.regions]]\n{_region()}"
        + f"[faults]\n{fault_lines}"
    )


def sub_toml(
    health_units: list[str] | None,
    *,
    slots: tuple[str, str] = ("/dev/vda2", "/dev/vda3"),
    fw_env_config: str = "/etc/fw_env.config",
    state_dir: Path = Path("/var/lib/redstone"),
) -> str:
    """The guest's own Sub: by default its slots are the board's p2/p3 and the env p4
    (U-Boot); ``health_units`` None leaves the health check out."""
    text = (
        "[slots]\n"
        "tries = 2\n"
        f"state-dir = {_q(state_dir)}\n"
        f"A = {{ device = {_q(slots[0])} }}\n"
        f"B = {{ device = {_q(slots[1])} }}\n"
        "[slots.bootloader]\n"
        'backend = "uboot"\n'
        "[slots.bootloader.uboot]\n"
        f"fw-env-config = {_q(fw_env_config)}\n"
        'defaults = "/etc/u-boot-initial-env"\n'
        "[sub]\n"
        f"ecu-serial = {_q(BODY.serial)}\n"
        f"hardware-id = {_q(BODY.hardware_id)}\n"
        f"state-dir = {_q(state_dir / 'sub')}\n"
        'dbus = "system"\n'
        "[sub.someip]\n"
        f"instance-id = {BODY.instance_id}\n"
        f"address = {_q(GUEST_IP)}\n"
        f"port = {SUB_PORT}\n"
        'daemon-socket = "/run/someipyd.sock"\n'
        "[sub.trust]\n"
        f"director-root = {_q(TRUST / 'director.root.json')}\n"
        f"image-root = {_q(TRUST / 'image.root.json')}\n"
        f"ecu-key = {_q(TRUST / 'body.pem')}\n"
    )
    if health_units is None:
        return text
    return text + f"[sub.health]\nunits = {json.dumps(health_units)}\ntimeout = 180.0\n"


def guest_master_files(**uds: dict[str, Path]) -> MasterFiles:
    """Where a guest's Master finds its state, cache, keys and trust roots (the data
    partition and /etc/redstone); ``uds``: ``uds_configs``/``uds_keys`` by ECU role."""
    return MasterFiles(
        state_dir=Path("/var/lib/redstone/master"),
        cache_dir=Path("/var/lib/redstone/cache"),
        ecu_key=TRUST / "tbox.pem",
        cert=TRUST / "client.pem",
        key=TRUST / "client.key",
        ca=TRUST / "cloud-ca.pem",
        director_root=TRUST / "director.root.json",
        image_root=TRUST / "image.root.json",
        someip_socket=Path("/run/someipyd.sock"),
        **uds,
    )


def offline_master_toml(plan: VehiclePlan, files: MasterFiles) -> str:
    """``master.toml`` of a guest that has no cloud (bundles only): it polls rarely and
    gives an install under TCG time."""
    text = master_toml(
        plan, files, address=GUEST_IP, cloud_url="https://127.0.0.9:8443", dbus="system"
    )
    text = text.replace("poll-interval-s = 2.0", "poll-interval-s = 3600.0")
    return text.replace("install-s = 300.0", "install-s = 900.0")


def guest_master_toml() -> str:
    files = guest_master_files(
        uds_configs={BCM.role: ETC / "ecus" / "bcm.toml"},
        uds_keys={BCM.role: TRUST / "bcm.pem"},
    )
    # The cache holds a rootfs image.
    return offline_master_toml(PLAN, files).replace("budget-mib = 64", "budget-mib = 192")


def someipyd_json() -> str:
    config = {
        "socket_path": "/run/someipyd.sock",
        "interface": GUEST_IP,
        "sd_address": "224.224.224.245",
        "sd_port": 30490,
        "log_level": "INFO",
    }
    return json.dumps(config, indent=2) + "\n"


def factory_tree(
    world: World,
    tree: Path,
    image_dir: Path,
    factory_image: Path,
    *,
    health_units: list[str],
) -> Path:
    """The data partition's content: ``factory/etc-redstone`` (bound on /etc/redstone)
    and the Sub's factory journal naming the image in slot A as committed."""
    etc = tree / "factory" / "etc-redstone"
    trust = etc / "trust"
    (etc / "ecus").mkdir(parents=True)
    trust.mkdir()
    (etc / "master.toml").write_text(guest_master_toml())
    (etc / "sub.toml").write_text(sub_toml(health_units))
    (etc / "someipyd.json").write_text(someipyd_json())
    (etc / "ecus" / "bcm.toml").write_text(bcm_tester_toml())
    (trust / "director.root.json").write_bytes(world.director_root)
    (trust / "image.root.json").write_bytes(world.repo.root.read_bytes())
    (trust / "cloud-ca.pem").write_bytes(world.cloud.ca.read_bytes())
    (trust / "client.pem").write_bytes(world.client_cert.read_bytes())
    master = guest_uid(image_dir, "redstone-master")
    for name, role in (("tbox.pem", "tbox"), ("bcm.pem", "bcm"), ("body.pem", "body")):
        save_signer(world.signers[role], trust / name)
    (trust / "client.key").write_bytes(world.client_key.read_bytes())
    for name in ("tbox.pem", "bcm.pem", "client.key"):
        (trust / name).chmod(0o600)
        os.chown(trust / name, master, master)
    (trust / "body.pem").chmod(0o600)
    length, sha256 = file_facts(factory_image)
    record = Record(
        current=BODY.target(FACTORY),
        current_length=length,
        current_sha256=sha256,
        release_counter=1,
    )
    (tree / "sub").mkdir()
    Journal(tree / "sub" / "sub.json").save(record.to_dict())
    journal = tree / Path(JOURNAL).name  # the image links /var/log/journal here
    journal.mkdir()
    os.chown(journal, 0, guest_gid(image_dir, "systemd-journal"))
    journal.chmod(0o2755)
    return tree


# -- everything a test sequence needs, made before the first power-on ------------------------

BAD_HEALTH_DROPIN = "/etc/systemd/system/redstone-health.service.d/body-selftest.conf"
BAD_HEALTH = (
    b"# Release 3.0.0's product check: the door module does not answer.\n"
    b"[Service]\n"
    b"ExecStart=/bin/sh -c 'echo \"body-selftest: door module does not answer\"; exit 1'\n"
)


BCM_BUNDLE = "bcm.rsbundle"
GOOD_BUNDLE = "body-2.rsbundle"
BAD_BUNDLE = "body-3.rsbundle"
SIM_BCM = "sim-bcm.toml"
"""The stick's files: three bundles and the BCM simulator's config (NRC storm on)."""
STICK_MIB = 320


def prepare_campaigns(world: World, workdir: Path, factory_image: Path, stick: Path) -> list[Path]:
    """Three campaigns, bundled in order onto ``stick``, each settled in the cloud before
    the next starts (the vehicle's later online report, signed with its keys): (c) the
    BCM to 2.0.0, (a) the body (this guest's rootfs) to 2.0.0, (b) the body to 3.0.0,
    whose product health check fails. Rootfs releases are the factory image with a new
    /etc/redstone-release (and for 3.0.0 the failing drop-in); the backend makes block
    deltas between them, and the two the bundles carry are signed offline, so the
    director assigns the Sub a delta of a few KiB against the slot it runs (a full
    288 MiB image takes minutes under TCG). The bundles, in that order."""
    from tools.qemu.vehicle.image import derive

    tbox = ("tbox-1.0.0", 1, "00" * 32, 1)
    body_v1 = (BODY.target(FACTORY), *file_facts(factory_image), 1)
    bcm_v1_file, bcm_v2_file = uds_file(workdir, FACTORY), uds_file(workdir, "2.0.0")
    bcm_v1 = (BCM.target(FACTORY), *file_facts(bcm_v1_file), 1)
    bcm_v2 = (BCM.target("2.0.0"), *file_facts(bcm_v2_file), 2)
    world.release(BCM, FACTORY, bcm_v1_file, 1)
    world.release(BODY, FACTORY, factory_image, 1)
    world.report({TBOX.serial: tbox, BODY.serial: body_v1, BCM.serial: bcm_v1})

    flash = world.campaign([world.release(BCM, "2.0.0", bcm_v2_file, 2)])
    bundles = [_bundled(world, flash, stick / BCM_BUNDLE)]
    settled = world.report({TBOX.serial: tbox, BODY.serial: body_v1, BCM.serial: bcm_v2})
    assert settled == "succeeded", settled

    good = derive(factory_image, workdir / "body-2.0.0.ext4", _release("2.0.0"))
    bad = derive(
        factory_image,
        workdir / "body-3.0.0.ext4",
        {**_release("3.0.0"), BAD_HEALTH_DROPIN: BAD_HEALTH},
    )
    world.release(BODY, "2.0.0", good, 2)
    world.release(BODY, "3.0.0", bad, 3)
    images = {
        BODY.target(FACTORY): factory_image,
        BODY.target("2.0.0"): good,
        BODY.target("3.0.0"): bad,
    }
    wanted = {
        (BODY.target(FACTORY), BODY.target("2.0.0")),
        (BODY.target("2.0.0"), BODY.target("3.0.0")),
    }
    world.sign_deltas(images, wanted)

    update = world.campaign([BODY.target("2.0.0")])
    bundles.append(_bundled(world, update, stick / GOOD_BUNDLE))
    body_v2 = (BODY.target("2.0.0"), *file_facts(good), 2)
    settled = world.report({TBOX.serial: tbox, BODY.serial: body_v2, BCM.serial: bcm_v2})
    assert settled == "succeeded", settled

    failing = world.campaign([BODY.target("3.0.0")])
    bundles.append(_bundled(world, failing, stick / BAD_BUNDLE))
    return bundles


def _release(version: str) -> dict[str, bytes]:
    return {"/etc/redstone-release": f"version={version}\n".encode()}


def _bundled(world: World, campaign: str, output: Path) -> Path:
    summary = world.bundle(campaign, output)
    assert summary["missing_rollback"] == [], summary
    # A bundle of full rootfs images would not fit the Master's cache: deltas only.
    assert output.stat().st_size < 16 << 20, summary
    return output


# -- the factory board and the stick, built once per input (cached) --------------------------


@dataclass(frozen=True)
class GuestRelease(OfflineRelease):
    """One cache entry (``vguestrel-<key>``, :mod:`tests.system.offline_release`): the
    factory board's disk (the vehicle template, the env provisioned for slot A, the data
    partition with this world's keys, trust roots and the Sub's factory journal) and the
    USB stick (:data:`BCM_BUNDLE`, :data:`GOOD_BUNDLE`, :data:`BAD_BUNDLE`,
    :data:`SIM_BCM`). The cloud that signed them is gone: the guest is offline."""


def guest_release(template: Path, image_dir: Path) -> GuestRelease:
    """The cached :class:`GuestRelease` for this disk template and vehicle image (the
    cloud's and the agent's code are in the image's key: its wheel)."""
    inputs: list[str | Path] = [template.parent.name, image_dir.name, Path(__file__).resolve()]

    def build(work: Path, out: Path) -> list[Path]:
        return _build_guest_release(template, image_dir, work, GuestRelease(out))

    return GuestRelease(cached_release(GUEST_RELEASE_KIND, inputs, build))


GUEST_RELEASE_KIND = "vguestrel"


def _build_guest_release(
    template: Path, image_dir: Path, work: Path, made: GuestRelease
) -> list[Path]:
    factory_image = image_dir / IMAGE
    stick = work / "stick"
    stick.mkdir()
    world = build_world(work / "world")
    try:
        bundles = prepare_campaigns(world, work, factory_image, stick)
        tree = factory_tree(
            world, work / "data", image_dir, factory_image, health_units=[BOOT_COMPLETE]
        )
    finally:
        world.close()
    (stick / SIM_BCM).write_text(bcm_sim_toml(FACTORY, NRC_STORM))
    make_stick(made.stick, stick, STICK_MIB)
    board = Board.create(work / "board", template)
    board.provision("A")
    write_data_partition(board, tree)
    board.disk.rename(made.disk)
    return bundles
