"""The virtual vehicle: cloud, TBox, two Subs and two UDS ECUs on one machine.

:class:`VirtualVehicle` builds everything in the order a real programme
would — cloud and PKI, vehicle registration, factory provisioning of each
ECU, releases signed offline, a campaign — and tears all of it down on
close, also after a half-finished build. Each step lives in its own module;
this one only composes them and says what it is doing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from redstone_agent.master.topology import EcuKind
from redstone_agent.uptane.keys import generate_signer, public_key_to_dict, save_signer
from redstone_agent.uptane.tufapi import CryptoSigner
from redstone_agent.vvehicle import ecus as uds_ecus
from redstone_agent.vvehicle.busd import PrivateBus, have_dbus_daemon
from redstone_agent.vvehicle.canbus import VehicleBus
from redstone_agent.vvehicle.cloud import Cloud
from redstone_agent.vvehicle.console import Console, open_console
from redstone_agent.vvehicle.ecus import UdsEcu, provision_uds
from redstone_agent.vvehicle.errors import VehicleError
from redstone_agent.vvehicle.imagerepo import ImageRepo
from redstone_agent.vvehicle.images import image
from redstone_agent.vvehicle.netlab import (
    Lab,
    Node,
    Scaffold,
    executable,
    have_namespaces,
    open_lab,
)
from redstone_agent.vvehicle.operator import Device, Operator
from redstone_agent.vvehicle.plan import (
    RELEASES,
    VERSIONS,
    EcuPlan,
    MasterFiles,
    VehiclePlan,
    master_toml,
)
from redstone_agent.vvehicle.report import CampaignResult, merge
from redstone_agent.vvehicle.subs import SubNode, Supervisor, provision_sub
from redstone_agent.vvehicle.tbox import TBox

Progress = Callable[[str], None]
StatusHook = Callable[[dict[str, Any]], None]
FACTORY_FAULTS: dict[str, dict[str, object]] = {"gateway": {"dtcs_after_flash": [0xC12300]}}
"""The gateway's next image logs a lost-communication DTC when it starts: the campaign
report shows it as appeared during the update (docs/master.md §9)."""
NO_DOCAN = (
    "not root: the DoCAN ECU and the body CAN bus are left out (udp_multicast CAN needs a "
    "private network namespace); the vehicle's state is not checked"
)


def release_counter(version: str) -> int:
    """Anti-rollback counter of a release: its position in :data:`RELEASES`, from 1."""
    return RELEASES.index(version) + 1


@dataclass(frozen=True)
class Identity:
    """The vehicle's TLS client identity (key and issued certificate)."""

    key: Path
    cert: Path


class VirtualVehicle(Scaffold):
    """Build with ``with VirtualVehicle(workdir) as vehicle:``; everything stops on exit."""

    def __init__(
        self, workdir: Path, *, isolated: bool | None = None, progress: Progress | None = None
    ) -> None:
        self.workdir = workdir
        self.isolated = have_namespaces() if isolated is None else isolated
        self.plan = VehiclePlan.default(with_docan=self.isolated)
        self.say: Progress = progress or (lambda _line: None)
        self.lab: Lab = open_lab(workdir / "lab", self.plan.nodes, isolated=self.isolated)
        self.cloud: Cloud | None = None
        self.console: Console | None = None
        self.repo = ImageRepo(workdir / "image-repo")
        self.images_dir = workdir / "images"
        self.signers: dict[str, CryptoSigner] = {}
        self.identity: Identity | None = None
        self.subs: list[SubNode] = []
        self.uds: list[UdsEcu] = []
        self.supervisor: Supervisor | None = None
        self.master_config = workdir / "lab" / "master" / "master.toml"
        self._tbox: TBox | None = None
        self._uploaded: set[str] = set()
        self._signed_deltas: set[str] = set()
        self.campaigns: list[str] = []
        self.can: VehicleBus | None = None
        """The body CAN bus (speed, gear…) the Master's preconditions read; None without
        network namespaces."""
        self.bus: PrivateBus | None = None
        """The D-Bus the Master publishes org.redstone.Master1 on (redstonectl --bus)."""

    # -- parts --------------------------------------------------------------------------

    @property
    def master(self) -> Node:
        return self.lab.nodes["master"]

    @property
    def tbox(self) -> TBox:
        """The Master daemon (started by :meth:`run_campaign` or :meth:`start_master`)."""
        if self._tbox is None:
            self._tbox = TBox(self.master, self.master_config)
        return self._tbox

    def operator(self) -> Operator:
        assert self.cloud is not None
        return Operator(self.cloud.client(), self.cloud.admin_token)

    def device(self) -> Device:
        """The cloud as the vehicle sees it (its client certificate)."""
        assert self.cloud is not None and self.identity is not None
        return Device(self.cloud.client(cert=(self.identity.cert, self.identity.key)))

    # -- build --------------------------------------------------------------------------

    def _build(self) -> None:
        self.lab.__enter__()
        how = "in network namespaces" if self.isolated else "on loopback addresses"
        self.say(f"lab up: {len(self.lab.nodes)} nodes {how}")
        if not self.isolated:
            self.say(NO_DOCAN)
        self.lab.start_daemons(["master", *(e.node for e in self.plan.of_kind(EcuKind.SUB))])
        if self.isolated:
            self.can = VehicleBus(self.master)
            self.can.set("parked")
            self.say("body CAN bus up: redstone-cansim plays a parked car")
        if have_dbus_daemon():
            self.bus = PrivateBus(self.master)
            self.bus.start()
            self.say(f"D-Bus up: {self.bus.address} (redstonectl --bus ...)")
        self.cloud = Cloud(self.lab.nodes["cloud"], self.workdir / "cloud")
        self.cloud.start()
        self.say(f"cloud up: {self.cloud.url}")
        self.console = open_console(self.cloud)
        self.say(
            f"console: {self.console.url} (sign in as {self.console.user}, password "
            f"{self.console.password}; the browser asks to trust {self.console.ca})"
        )
        self.signers = {e.role: generate_signer() for e in self.plan.ecus}
        self.repo.init()
        self._register()
        self.say(f"vehicle {self.plan.vin} registered with {len(self.plan.ecus)} ECUs")
        director_root = self._fetch_director_root()
        self._start_subs(director_root)
        self.say("subs up: " + ", ".join(f"{s.ecu.role} ({s.net.ip})" for s in self.subs))
        self._start_uds()
        self.say(
            "ECU simulators up: " + ", ".join(f"{u.ecu.role} ({u.ecu.transport})" for u in self.uds)
        )
        self._write_master_config()
        self.say(f"master config: {self.master_config}")

    def _register(self) -> None:
        with self.operator() as op:
            op.create_model(self.plan.model_json())
            keys = {
                e.serial: public_key_to_dict(self.signers[e.role].public_key)
                for e in self.plan.ecus
            }
            op.register_vehicle(self.plan.vehicle_json(keys))
            trust = self.master.workdir / "trust"
            trust.mkdir(exist_ok=True)
            key_path, csr = _tls_key_and_csr(trust / "client.key", self.plan.vin)
            cert = trust / "client.pem"
            cert.write_text(op.issue_certificate(self.plan.vin, csr))
            self.identity = Identity(key_path, cert)
        save_signer(self.signers["tbox"], trust / "ecu.pem")

    def _fetch_director_root(self) -> bytes:
        with self.device() as device:
            root = device.director_root(self.plan.vin)
        (self.master.workdir / "trust" / "director.root.json").write_bytes(root)
        return root

    def _start_subs(self, director_root: bytes) -> None:
        for ecu in self.plan.of_kind(EcuKind.SUB):
            sub = provision_sub(
                ecu,
                self.lab.nodes[ecu.node],
                signer=self.signers[ecu.role],
                factory_image=self.image_file(ecu, VERSIONS[0]).read_bytes(),
                release_counter=release_counter(VERSIONS[0]),
                director_root=director_root,
                image_root=self.repo.root.read_bytes(),
            )
            self.subs.append(sub)
            sub.start()
        self.supervisor = Supervisor(self.subs)
        self.supervisor.start()

    def _start_uds(self) -> None:
        for ecu in self.plan.of_kind(EcuKind.UDS_DOCAN, EcuKind.UDS_DOIP):
            uds = provision_uds(ecu, self.lab.nodes[ecu.node], self.signers[ecu.role])
            self.uds.append(uds)
            uds.start(VERSIONS[0], FACTORY_FAULTS.get(ecu.role))

    def _write_master_config(self) -> None:
        assert self.cloud is not None and self.identity is not None
        trust = self.master.workdir / "trust"
        files = MasterFiles(
            state_dir=self.master.workdir / "state",
            cache_dir=self.master.workdir / "cache",
            ecu_key=trust / "ecu.pem",
            cert=self.identity.cert,
            key=self.identity.key,
            ca=self.cloud.ca,
            director_root=trust / "director.root.json",
            image_root=self.repo.root,
            someip_socket=self.master.socket_path,
            uds_configs={u.ecu.role: u.tester_config for u in self.uds},
            uds_keys={u.ecu.role: u.key for u in self.uds},
        )
        self.master_config.write_text(
            master_toml(
                self.plan,
                files,
                address=self.master.ip,
                cloud_url=self.cloud.url,
                dbus=self.bus.address if self.bus else "none",
                vehicle=self.can.master_table() if self.can else "",
            )
        )

    # -- releases and campaigns ---------------------------------------------------------

    def image_file(self, ecu: EcuPlan, version: str) -> Path:
        """The image of *ecu* at *version*, written once under ``images/``."""
        path = self.images_dir / ecu.target(version)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image(ecu, version))
        return path

    def release(self, version: str, *, deltas: bool = True) -> None:
        """Upload every ECU's *version* (and the factory images once), let the backend make
        the deltas, sign images and Sub deltas offline, upload the signed metadata.

        With ``deltas=False`` the backend's new deltas are left unsigned, so the director
        assigns full images (a later release signs them)."""
        targets: dict[str, tuple[EcuPlan, str]] = {}
        with self.operator() as op:
            for ecu in self.plan.updatable:
                for v in (VERSIONS[0], version):
                    target = ecu.target(v)
                    targets[target] = (ecu, v)
                    if target in self._uploaded:
                        continue
                    data = self.image_file(ecu, v).read_bytes()
                    op.upload_package(ecu.role, v, ecu.hardware_id, data, release_counter(v))
                    self.repo.add_image(
                        self.image_file(ecu, v), target, ecu.hardware_id, release_counter(v), v
                    )
                    self._uploaded.add(target)
            self.say(f"release {version}: packages uploaded; the cloud is making deltas")
            op.wait_deltas(progress=None)
            signed = self._sign_deltas(op) if deltas else 0
            op.upload_image_repo(self.repo.sign())
        self.say(
            f"release {version}: image repository signed offline and uploaded ({signed} deltas)"
        )

    def _sign_deltas(self, op: Operator) -> int:
        """Sign the finished Sub deltas (UDS ECUs are flashed whole, so theirs stay unsigned)."""
        packages = {p["target"]: p for p in op.packages()}
        sub_hw = {e.hardware_id for e in self.plan.of_kind(EcuKind.SUB)}
        jobs = op.call("GET", "/api/v1/deltas")
        count = 0
        for job in jobs:
            target = job.get("delta_target")
            if not target or target in self._signed_deltas:
                continue
            package = packages[target]
            if not sub_hw & set(package["hardware_ids"]):
                continue
            old = (self.images_dir / job["from_target"]).read_bytes()
            new = (self.images_dir / job["to_target"]).read_bytes()
            file = op.download(target, self.images_dir / target)  # operator's, not the car's
            self.repo.add_delta(
                file,
                target,
                package["hardware_ids"][0],
                package["release_counter"],
                old=old,
                new=new,
                source_sha256=hashlib.sha256(old).hexdigest(),
            )
            self._signed_deltas.add(target)
            count += 1
        return count

    def offer(self, version: str, *, deltas: bool = True, consent: bool = False) -> str:
        """Release *version* and start a campaign moving every ECU to it; return its name.
        ``deltas=False``: full images only (see :meth:`release`); ``consent``: the
        driver must accept it."""
        self.release(version, deltas=deltas)
        return self.start_campaign(version, consent=consent)

    def start_campaign(self, version: str, *, consent: bool = False) -> str:
        """Start a campaign moving every ECU to the released *version*; return its name."""
        name = f"campaign-{len(self.campaigns) + 1}"
        with self.operator() as op:
            op.create_campaign(self.plan.campaign_json(name, version, consent=consent))
            started = op.start_campaign(name)
        skipped = started.get("skipped") if isinstance(started, dict) else None
        if skipped:
            raise VehicleError(f"{name}: the cloud skipped the vehicle: {skipped}")
        self.campaigns.append(name)
        self.say(f"{name} started: every ECU to {version}")
        return name

    def sub(self, role: str) -> SubNode:
        """The Sub playing *role* (``adas``, ``ivi``)."""
        found = [s for s in self.subs if s.ecu.role == role]
        if not found:
            raise VehicleError(
                f"no Sub {role!r} (Subs: {', '.join(s.ecu.role for s in self.subs)})"
            )
        return found[0]

    def uds_ecu(self, role: str) -> UdsEcu:
        """The UDS ECU simulator playing *role* (``bcm``, ``gateway``)."""
        found = [u for u in self.uds if u.ecu.role == role]
        if not found:
            names = ", ".join(u.ecu.role for u in self.uds)
            raise VehicleError(f"no UDS ECU {role!r} (UDS ECUs: {names})")
        return found[0]

    def inject_check_failure(self, role: str | None = None) -> UdsEcu:
        """Make a UDS ECU (default: the plan's failing one) fail its check routines from
        now on, on its current version, until :meth:`clear_faults`."""
        uds = self.uds_ecu(role or self.plan.failing)
        running = uds_ecus.read_version(uds, self.master)
        uds.start(running, {"wrong_checksum": True})
        self.say(f"{uds.ecu.role}: its check routine will fail (still running {running})")
        return uds

    def clear_faults(self, role: str | None = None) -> None:
        """Restart UDS ECU *role* (default: every one) on the version it runs, without faults."""
        for uds in [self.uds_ecu(role)] if role else self.uds:
            running = uds_ecus.read_version(uds, self.master)
            uds.start(running)
            self.say(f"{uds.ecu.role}: no faults injected (running {running})")

    # -- what the ECUs really run -------------------------------------------------------

    def versions(self) -> dict[str, str]:
        """serial → version each ECU runs now, read from the ECU itself."""
        found: dict[str, str] = {}
        for sub in self.subs:
            found[sub.ecu.serial] = sub.running_version()
        for uds in self.uds:
            found[uds.ecu.serial] = uds_ecus.read_version(uds, self.master)
        return found

    def redstonectl(self, *args: str, timeout: float = 30.0) -> str:
        """Run ``redstonectl --bus <the lab's bus> ARGS`` on the TBox; its stdout."""
        if self.bus is None:
            raise VehicleError("no D-Bus in this lab (dbus-daemon is not installed)")
        return self.master.run(
            [executable("redstonectl"), "--bus", self.bus.address, *args], timeout=timeout
        )

    def run_campaign(
        self, campaign: str, expected: str, on_status: StatusHook | None = None
    ) -> CampaignResult:
        """Let the Master run *campaign*, then check every ECU runs *expected*;
        ``on_status`` sees every status the Master publishes meanwhile (to act on it)."""
        report = self.tbox.run_campaign(campaign, progress=self.say, on_status=on_status)
        names = {e.serial: e.role for e in self.plan.updatable}
        return merge(report, self.versions(), names, expected)

    def summary(self) -> dict[str, Any]:
        assert self.cloud is not None
        return {
            "workdir": str(self.workdir),
            "isolated": self.isolated,
            "vin": self.plan.vin,
            "cloud": self.cloud.url,
            "admin_token": self.cloud.admin_token,
            "cloud_ca": str(self.cloud.ca),
            "cloud_socket": str(self.cloud.relay_socket) if self.isolated else None,
            "console": self.console.url if self.console else None,
            "console_user": self.console.user if self.console else None,
            "master_config": str(self.master_config),
            "dbus": self.bus.address if self.bus else None,
            "nodes": {n.name: {"ip": n.ip, "netns": n.netns} for n in self.lab.nodes.values()},
        }

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        if self.can is not None:
            self.can.stop()
        if self.bus is not None:
            self.bus.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        for sub in self.subs:
            sub.kill()
        for uds in self.uds:
            uds.stop()
        self.lab.close()


def _tls_key_and_csr(key_path: Path, vin: str) -> tuple[Path, bytes]:
    """The TBox's TLS key (0600) and a CSR for it; the cloud's PKI fills in the rest."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path.touch(mode=0o600)
    key_path.write_bytes(pem)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vin)]))
        .sign(key, hashes.SHA256())
    )
    return key_path, csr.public_bytes(serialization.Encoding.PEM)
