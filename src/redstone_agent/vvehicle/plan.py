"""What the virtual vehicle is made of, and every config file it writes — pure, no I/O.

One :class:`VehiclePlan` names the ECUs (a TBox, two Subs, a DoCAN and a
DoIP ECU), their serials, hardware ids, lab nodes and the versions the
campaigns move them through. The functions below turn it into the same
files an integrator writes for a real vehicle (``master.toml``,
``sub.toml``, UDS ECU files, simulator files, ``cloud.toml``), so reading
them shows how a real vehicle is configured; unit tests check them without
starting anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from redstone_agent.master.topology import EcuKind

VIN = "RSVV1234567890001"
"""17 characters of A-Z0-9 without I, O, Q (the cloud checks)."""
VERSIONS = ("1.0.0", "2.0.0", "3.0.0")
"""Factory image, campaign 1 (must succeed), campaign 2 (one ECU fails, all roll back)."""
RELEASES = VERSIONS + tuple(f"{n}.0.0" for n in range(len(VERSIONS) + 1, 65))
"""Every release the virtual vehicle can ship, oldest first: the demo's :data:`VERSIONS`,
then more for longer test sequences (one fresh release per campaign). A release's
position is its anti-rollback counter, and each one changes its predecessor's image."""

CLOUD_PORT = 8443
CACHE_PORT = 8080
SUB_PORT = 30510
MASTER_SOMEIP_PORT = 30600
DOIP_PORT = 13400
CAN_GROUP = "239.74.163.2"
"""python-can udp_multicast group of the virtual CAN bus (inside the lab only)."""
CAN_BLOCK_SIZE = 16
"""ISO-TP block size: udp_multicast drops frames when unpaced; 8-32 works (PLATFORM.md)."""
DOIP_LOGICAL_ADDRESS = 0x0010
SECURITY_MASK = "5a3c9ee1"
UDS_REGION = ("app", 0x0001_0000, 0x0002_0000)
"""name, address, size of the simulated ECUs' flash region."""
VERSION_LENGTH = 16
"""The simulator reads its version DID from the image's first 16 bytes (NUL padded)."""


@dataclass(frozen=True)
class EcuPlan:
    """One ECU of the virtual vehicle."""

    role: str
    """Model role and package name (``adas`` → packages ``adas-1.0.0``, ``adas-2.0.0``)."""
    kind: EcuKind
    node: str
    """Lab node the ECU runs on (the TBox runs on ``master``)."""
    instance_id: int = 0
    """kind = sub: SOME/IP instance id."""

    @property
    def serial(self) -> str:
        return f"VV-{self.role.upper()}-0001"

    @property
    def hardware_id(self) -> str:
        return f"vv-{self.role}-hw"

    @property
    def transport(self) -> str:
        """How the Master reaches it, as the summary table names it."""
        return {
            EcuKind.SUB: "someip",
            EcuKind.UDS_DOCAN: "docan",
            EcuKind.UDS_DOIP: "doip",
            EcuKind.SELF: "self",
            EcuKind.BOOTLOADER: "self",
        }[self.kind]

    @property
    def cloud_kind(self) -> str:
        """The cloud model's ECU kind (``primary``, ``sub``, ``uds`` or ``bootloader``)."""
        if self.kind is EcuKind.SELF:
            return "primary"
        if self.kind is EcuKind.BOOTLOADER:
            return "bootloader"
        return "uds" if self.kind.is_uds else "sub"

    def target(self, version: str) -> str:
        """The Uptane target name the cloud gives package ``role``/``version``."""
        return f"{self.role}-{version}"


TBOX = EcuPlan("tbox", EcuKind.SELF, "master")
ADAS = EcuPlan("adas", EcuKind.SUB, "adas", instance_id=1)
IVI = EcuPlan("ivi", EcuKind.SUB, "ivi", instance_id=2)
BCM = EcuPlan("bcm", EcuKind.UDS_DOCAN, "bcm")
GATEWAY = EcuPlan("gateway", EcuKind.UDS_DOIP, "gateway")


@dataclass(frozen=True)
class VehiclePlan:
    """The whole vehicle; ``with_docan=False`` leaves the DoCAN ECU out (no namespaces)."""

    ecus: tuple[EcuPlan, ...]
    vin: str = VIN
    model: str = "virtual-sedan"
    failing: str = GATEWAY.role
    """The UDS ECU whose check routine fails in campaign 2."""

    @classmethod
    def default(cls, *, with_docan: bool = True) -> VehiclePlan:
        ecus = (TBOX, ADAS, IVI, *((BCM,) if with_docan else ()), GATEWAY)
        return cls(ecus)

    @property
    def nodes(self) -> list[str]:
        """Lab nodes in address order: the Master first, then the cloud, then each ECU."""
        names = ["master", "cloud"]
        names += [e.node for e in self.ecus if e.node not in names]
        return names

    @property
    def updatable(self) -> list[EcuPlan]:
        """ECUs the campaigns update (the TBox's self-update is a separate capability)."""
        return [e for e in self.ecus if e.kind is not EcuKind.SELF]

    def of_kind(self, *kinds: EcuKind) -> list[EcuPlan]:
        return [e for e in self.ecus if e.kind in kinds]

    def ecu(self, role: str) -> EcuPlan:
        return next(e for e in self.ecus if e.role == role)

    def model_json(self) -> dict[str, object]:
        """Body of ``POST /api/v1/models``."""
        return {
            "name": self.model,
            "description": "redstone-vehicle: the virtual vehicle",
            "ecus": [
                {"role": e.role, "hardware_id": e.hardware_id, "kind": e.cloud_kind}
                for e in self.ecus
            ],
        }

    def vehicle_json(self, public_keys: Mapping[str, dict[str, object]]) -> dict[str, object]:
        """Body of ``POST /api/v1/vehicles``; *public_keys* maps serial → key dict."""
        return {
            "vin": self.vin,
            "model": self.model,
            "ecus": [
                {
                    "serial": e.serial,
                    "hardware_id": e.hardware_id,
                    "primary": e.kind is EcuKind.SELF,
                    "public_key": public_keys[e.serial],
                }
                for e in self.ecus
            ],
        }

    def campaign_json(self, name: str, version: str, *, consent: bool = False) -> dict[str, object]:
        """Body of ``POST /api/v1/campaigns``: every updatable ECU to *version*;
        ``consent``: the driver must accept it."""
        return {
            "name": name,
            "targeting": {"vins": [self.vin]},
            "packages": [e.target(version) for e in self.updatable],
            "groups": [{"percent": 100, "success_threshold": 100, "error_threshold": 100}],
            "consent_required": consent,
        }


# -- config files --------------------------------------------------------------------------


def _q(value: object) -> str:
    """A TOML basic string (JSON's escaping is a subset TOML accepts)."""
    return json.dumps(str(value))


def _list(items: Iterable[object]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


@dataclass(frozen=True)
class MasterFiles:
    """Where the Master's files live and how it reaches the cloud and its ECUs."""

    state_dir: Path
    cache_dir: Path
    ecu_key: Path
    cert: Path
    key: Path
    ca: Path
    director_root: Path
    image_root: Path
    someip_socket: Path
    uds_configs: dict[str, Path] = field(default_factory=dict)
    """role → UDS ECU config file."""
    uds_keys: dict[str, Path] = field(default_factory=dict)
    """role → the key that signs that UDS ECU's manifest."""


def master_toml(
    plan: VehiclePlan,
    files: MasterFiles,
    *,
    address: str,
    cloud_url: str,
    dbus: str = "none",
    consent: str = "auto",
    vehicle: str = "",
) -> str:
    """The TBox's ``master.toml`` (schema: :mod:`redstone_agent.master.topology`);
    ``vehicle`` is a ready ``[master.vehicle]`` table (CAN preconditions) or ""."""
    lines = [
        "# Written by redstone-vehicle: the virtual vehicle's TBox.",
        "[master]",
        f"vin = {_q(plan.vin)}",
        f"ecu-key = {_q(files.ecu_key)}",
        f"state-dir = {_q(files.state_dir)}",
        f"consent = {_q(consent)}",
        f"dbus = {_q(dbus)}",
        "",
        vehicle,
        "[master.cloud]",
        f"url = {_q(cloud_url)}",
        f"cert = {_q(files.cert)}",
        f"key = {_q(files.key)}",
        f"ca = {_q(files.ca)}",
        "poll-interval-s = 2.0",
        "timeout-s = 10.0",
        "",
        "[master.trust]",
        f"director-root = {_q(files.director_root)}",
        f"image-root = {_q(files.image_root)}",
        "",
        "[master.someip]",
        f"address = {_q(address)}",
        f"daemon-socket = {_q(files.someip_socket)}",
        f"port = {MASTER_SOMEIP_PORT}",
        "",
        "[master.cache]",
        f"directory = {_q(files.cache_dir)}",
        "budget-mib = 64",
        f"address = {_q(address)}",
        f"port = {CACHE_PORT}",
        "",
        "[master.timeouts]",
        "install-s = 300.0",
        "activate-s = 120.0",
        "rollback-s = 120.0",
    ]
    for ecu in plan.ecus:
        lines += [
            "",
            "[[master.ecus]]",
            f"serial = {_q(ecu.serial)}",
            f"kind = {_q(ecu.kind.value)}",
            f"hardware-id = {_q(ecu.hardware_id)}",
        ]
        if ecu.kind is EcuKind.SUB:
            lines += [f"instance-id = {ecu.instance_id}", f'bus = "eth:{ecu.node}"']
        elif ecu.kind.is_uds:
            lines += [
                f"bus = {_q('can0' if ecu.kind is EcuKind.UDS_DOCAN else 'eth:' + ecu.node)}",
                f"uds-config = {_q(files.uds_configs[ecu.role])}",
                f"installed-target = {_q(ecu.target(VERSIONS[0]))}",
            ]
            if ecu.role in files.uds_keys:
                lines.append(f"ecu-key = {_q(files.uds_keys[ecu.role])}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SubFiles:
    """One Sub's files; ``slots_toml`` is :meth:`VirtualNode.config_toml`."""

    state_dir: Path
    director_root: Path
    image_root: Path
    ecu_key: Path
    someip_socket: Path
    reboot_marker: Path
    slots_toml: str


def sub_toml(ecu: EcuPlan, files: SubFiles, *, address: str) -> str:
    """A domain controller's ``sub.toml``: its reboot command drops a marker the
    supervisor turns into a power cycle (``redstone_agent.vvehicle.supervisor``)."""
    return (
        "# Written by redstone-vehicle: a virtual domain controller.\n"
        "[sub]\n"
        f"ecu-serial = {_q(ecu.serial)}\n"
        f"hardware-id = {_q(ecu.hardware_id)}\n"
        f"state-dir = {_q(files.state_dir)}\n"
        f"reboot-command = {_list(['touch', files.reboot_marker])}\n"
        'dbus = "none"\n'
        "[sub.someip]\n"
        f"instance-id = {ecu.instance_id}\n"
        f"address = {_q(address)}\n"
        f"port = {SUB_PORT}\n"
        f"daemon-socket = {_q(files.someip_socket)}\n"
        "[sub.trust]\n"
        f"director-root = {_q(files.director_root)}\n"
        f"image-root = {_q(files.image_root)}\n"
        f"ecu-key = {_q(files.ecu_key)}\n"
        "[sub.health]\n"
        'command = ["true"]\n'
        "timeout = 10.0\n" + files.slots_toml
    )


def _can_link() -> str:
    return (
        "[docan]\n"
        'interface = "udp_multicast"\n'
        f"channel = {_q(CAN_GROUP)}\n"
        "tx_id = 0x7E0\n"
        "rx_id = 0x7E8\n"
        f"block_size = {CAN_BLOCK_SIZE}\n"
    )


def _region() -> str:
    name, address, size = UDS_REGION
    return f"name = {_q(name)}\naddress = {address:#x}\nsize = {size:#x}\n"


def _link(ecu: EcuPlan, address: str, *, doip_extra: str = "") -> str:
    """The transport section both ends of a UDS ECU share (tester and simulator)."""
    if ecu.kind is EcuKind.UDS_DOCAN:
        return _can_link()
    return (
        "[doip]\n"
        f"host = {_q(address)}\n"
        f"tcp_port = {DOIP_PORT}\n"
        f"udp_port = {DOIP_PORT}\n"
        f"logical_address = {DOIP_LOGICAL_ADDRESS:#06x}\n"
        f"{doip_extra}"
    )


def uds_ecu_toml(ecu: EcuPlan, *, address: str) -> str:
    """The Master's (tester's) file for a UDS ECU (``docs/uds.md``): dual bank, so a
    failed check leaves the ECU on its running bank and rollback is a bank switch."""
    link = _link(ecu, address)
    return (
        f"name = {_q(ecu.role)}\n"
        f'transport = "{ecu.transport}"\n'
        f"{link}"
        "[security]\n"
        f'params = {{ mask = "{SECURITY_MASK}" }}\n'
        "[timing]\np2 = 2.0\n"
        '[programming]\ndual_bank = true\ncompression = "zlib"\nreset_settle = 0.3\n'
        f"[[regions]]\n{_region()}"
    )


def sim_toml(ecu: EcuPlan, *, address: str, version: str, faults: Mapping[str, object]) -> str:
    """The simulator's file: the same link, the ECU running *version* in bank A."""
    link = _link(ecu, address, doip_extra=f"vin = {_q(VIN)}\n")
    fault_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in sorted(faults.items()))
    return (
        f"name = {_q(ecu.role)}\n"
        "erase_time = 0.05\n"
        f"{link}"
        "[security]\n"
        f'params = {{ mask = "{SECURITY_MASK}" }}\n'
        "[memory]\n"
        "dual_bank = true\n"
        "version_offset = 0\n"
        f"version_length = {VERSION_LENGTH}\n"
        f"initial_version = {_q(version)}\n"
        f"[[memory.regions]]\n{_region()}"
        f"[faults]\n{fault_lines}"
    )


def cloud_toml(*, data_dir: Path, admin_sha256: str, cert: Path, key: Path) -> str:
    """The backend's config: SQLite in *data_dir*, one admin, TLS, fast polls and deltas
    (a release queues up to three deltas per ECU; two jobs at a time on the lab's cores)."""
    return (
        "[cloud]\n"
        f"database_url = {_q('sqlite:///' + str(data_dir / 'cloud.db'))}\n"
        f"data_dir = {_q(data_dir)}\n"
        "poll_interval_s = 2\n"
        "delta_interval_s = 0.25\n"
        "delta_workers = 2\n"
        "[[cloud.admins]]\n"
        'name = "redstone-vehicle"\n'
        f"token_sha256 = {_q(admin_sha256)}\n"
        "[cloud.tls]\n"
        f"cert = {_q(cert)}\n"
        f"key = {_q(key)}\n"
    )
