"""The ``[master]`` section of the TBox config: identity, cloud, trust, cache and the vehicle.

The vehicle's topology is a list of ``[[master.ecus]]`` tables, one per ECU,
each with its kind:

* ``sub`` — a domain controller running ``redstone-sub``, reached over SOME/IP
  by its instance id;
* ``uds-docan`` / ``uds-doip`` — a legacy ECU the Master flashes itself over
  UDS; addressing lives in the ECU's own file (``docs/uds.md``), named by
  ``uds-config``. With ``behind = "<sub serial>"`` the Sub flashes it on its own
  bus instead (docs/someip.md §11): its addressing then lives in the Sub's
  ``[[sub.uds-ecus]]``, not here;
* ``self`` — the TBox itself: it reports its manifest, and with a
  ``[master.self]`` table (its own A/B slots, health check, reboot command)
  a campaign updates its rootfs too;
* ``bootloader`` — the TBox's U-Boot boot script, kept in two redundant
  copies (its ``bootscript`` table, ``slots/bootscript``); it needs
  ``[master.self]``, whose U-Boot env it switches.

Ordering: a lower ``group`` is updated before a higher one; ``depends-on``
names ECUs that must finish a phase before this one starts it; ECUs on the
same ``bus`` are never flashed at the same time. The TBox's own ECUs
(:attr:`EcuKind.tier` ``tbox``) come after every other ECU, the boot script
before the rootfs (:attr:`EcuKind.rank`). Every check here raises
:class:`ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from redstone_agent.config import ConfigError, load
from redstone_agent.slots.config import SlotsConfig
from redstone_agent.vehicle.config import VehicleSettings

if TYPE_CHECKING:
    from redstone_agent.slots.bootscript import BootScriptConfig


class Tier(StrEnum):
    """Which part of the vehicle an ECU belongs to, for the campaign's order."""

    VEHICLE = "vehicle"
    """Reached over the vehicle network (Subs, UDS ECUs): updated first."""
    TBOX = "tbox"
    """The TBox's own boot script and rootfs: updated last, across its own reboot."""


class EcuKind(StrEnum):
    SUB = "sub"
    UDS_DOCAN = "uds-docan"
    UDS_DOIP = "uds-doip"
    SELF = "self"
    BOOTLOADER = "bootloader"

    @property
    def is_uds(self) -> bool:
        return self in (EcuKind.UDS_DOCAN, EcuKind.UDS_DOIP)

    @property
    def tier(self) -> Tier:
        return Tier.TBOX if self in (EcuKind.SELF, EcuKind.BOOTLOADER) else Tier.VEHICLE

    @property
    def rank(self) -> int:
        """Order inside a phase before ``group``: the boot script switches before the
        rootfs slot is primed, so whatever boots next boots both (0 for every other kind)."""
        return {EcuKind.BOOTLOADER: 1, EcuKind.SELF: 2}.get(self, 0)


@dataclass(frozen=True)
class EcuSpec:
    """One ECU of the vehicle as the Master sees it."""

    serial: str
    """The ECU serial the director assigns targets to."""
    kind: EcuKind
    hardware_id: str
    bus: str = ""
    """Bus the ECU is flashed over (``can0``, ``eth0``); flashes on one bus never overlap.
    Empty: the ECU's own name, i.e. it shares no bus."""
    group: int = 0
    """Ordering group: every ECU of a lower group finishes a phase first."""
    depends_on: list[str] = field(default_factory=list)
    """Serials that must finish each phase before this ECU starts it."""
    instance_id: int = 0
    """kind = sub: the Sub's SOME/IP instance id (unique per vehicle)."""
    uds_config: Path | None = None
    """kind = uds-*: the ECU's UDS config file (addressing, security, regions)."""
    installed_target: str = ""
    """kind = uds-*: the image-repository target the ECU runs from the factory.
    The Master journals each later install; this is only the starting point."""
    ecu_key: Path | None = None
    """kind = uds-*/self: key that signs this ECU's version manifest (default: the Master's)."""
    behind: str = ""
    """kind = uds-*: the serial of the Sub that flashes this ECU on its own bus
    (interface 1.1). Its addressing and manifest key then live in the Sub's config."""
    bootscript: dict[str, Any] = field(default_factory=dict)
    """kind = bootloader: the boot script's copies (``slots.bootscript.BootScriptConfig``)."""

    def __post_init__(self) -> None:
        if not self.serial:
            raise ValueError("serial must not be empty")
        if self.kind is EcuKind.SUB and self.instance_id <= 0:
            raise ValueError(f"ECU {self.serial}: a sub needs instance-id >= 1")
        if self.behind and not self.kind.is_uds:
            raise ValueError(f"ECU {self.serial}: behind is only for uds-docan/uds-doip ECUs")
        if self.behind and self.uds_config is not None:
            raise ValueError(
                f"ECU {self.serial}: uds-config is not used behind a Sub "
                f"(its addressing lives in {self.behind}'s [[sub.uds-ecus]])"
            )
        if self.behind and self.ecu_key is not None:
            raise ValueError(
                f"ECU {self.serial}: ecu-key is not used behind a Sub "
                f"({self.behind} signs its manifest: [[sub.uds-ecus]] ecu-key)"
            )
        if self.kind.is_uds and self.uds_config is None and not self.behind:
            raise ValueError(f"ECU {self.serial}: a {self.kind} ECU needs uds-config (or behind)")
        if self.kind is not EcuKind.SUB and self.instance_id:
            raise ValueError(f"ECU {self.serial}: instance-id is only for kind 'sub'")
        if (self.kind is EcuKind.BOOTLOADER) != bool(self.bootscript):
            raise ValueError(
                f"ECU {self.serial}: a bootloader ECU needs a bootscript table"
                if self.kind is EcuKind.BOOTLOADER
                else f"ECU {self.serial}: bootscript is only for kind 'bootloader'"
            )

    @property
    def order(self) -> tuple[int, int]:
        """What ``group`` ordering compares: (kind rank, group)."""
        return (self.kind.rank, self.group)

    @property
    def bus_name(self) -> str:
        """The lock two flashes may not share. Behind a Sub the bus is that Sub's: by
        default every ECU behind one Sub shares one (``<sub>:uds``)."""
        if self.behind:
            return f"{self.behind}:{self.bus or 'uds'}"
        return self.bus or f"ecu:{self.serial}"


@dataclass(frozen=True)
class CloudSettings:
    url: str
    """Base URL of the backend, e.g. ``https://ota.example.com``."""
    cert: Path | None = None
    """The vehicle's client certificate (PEM) for mutual TLS."""
    key: Path | None = None
    ca: Path | None = None
    """CA bundle for the server certificate (default: the system's)."""
    poll_interval_s: float = 300.0
    """Used until the server names its own interval."""
    timeout_s: float = 30.0
    enroll_token: Path | None = None
    """A file holding a one-time EST enrollment token: with no certificate yet, the
    Master gets one at start (docs/keys.md §6) and deletes the file."""
    renew_before_days: float = 30.0
    """Renew the certificate over EST when less than this is left (or a third of its
    life, if that is shorter: a 30-day certificate renews with 10 days left)."""
    tunnel_cert: Path | None = None
    """With the TLS key on a token behind a TLS tunnel (docs/keys.md §8): the
    certificate file the tunnel presents, renewed over EST for the same key."""
    tunnel_key: str | None = None
    """The ``pkcs11:`` URI of that key (it signs the renewal's CSR)."""
    tunnel_reload: tuple[str, ...] = ()
    """Command that makes the tunnel load a renewed certificate, e.g.
    ``["systemctl", "reload", "redstone-tls-tunnel"]`` (stunnel re-reads on SIGHUP)."""

    def __post_init__(self) -> None:
        if not 0 < self.renew_before_days <= 3650:
            raise ValueError("renew-before-days: must be between 0 and 3650 days")
        if (self.tunnel_cert is None) != (self.tunnel_key is None):
            raise ValueError("tunnel-cert and tunnel-key: give both or neither")
        if self.tunnel_cert is not None and self.cert is not None:
            raise ValueError("tunnel-cert: the tunnel holds the TLS identity; drop cert and key")
        if self.enroll_token is not None and (self.cert is None or self.key is None):
            raise ValueError("enroll-token: needs cert and key (where the new pair goes)")


@dataclass(frozen=True)
class TrustSettings:
    director_root: Path
    image_root: Path


@dataclass(frozen=True)
class CacheSettings:
    directory: Path = Path("/var/lib/redstone/cache")
    budget_mib: int = 2048
    address: str = "127.0.0.1"
    """The in-vehicle interface the cache server binds to (Subs download from it)."""
    port: int = 8080

    def __post_init__(self) -> None:
        if self.budget_mib <= 0:
            raise ValueError("budget-mib must be positive")


@dataclass(frozen=True)
class SomeIpSettings:
    address: str
    """The TBox's address on the vehicle network (its someipyd's interface)."""
    daemon_socket: str = "/run/someipyd.sock"
    port: int = 30600
    call_timeout_s: float = 5.0
    """One SOME/IP method call's deadline."""


@dataclass(frozen=True)
class TimeoutSettings:
    """How long an ECU may take for each phase before the campaign rolls back."""

    install_s: float = 1800.0
    activate_s: float = 600.0
    rollback_s: float = 600.0


@dataclass(frozen=True)
class DiagnosticsSettings:
    """UDS diagnostics around every campaign (docs/master.md §9)."""

    enabled: bool = True
    dtc_status_mask: int = 0x09
    """reportDTCByStatusMask mask: testFailed | confirmedDTC by default."""
    clear_new_dtcs: bool = False
    """After commit, clear (0x14) the DTCs that appeared during the update."""

    def __post_init__(self) -> None:
        if not 0 < self.dtc_status_mask <= 0xFF:
            raise ValueError("dtc-status-mask must be 1..255")


@dataclass(frozen=True)
class SelfHealthSettings:
    """What the new TBox image must show after its reboot before the campaign commits."""

    units: list[str] = field(default_factory=list)
    """systemd units that must be active (``systemctl is-active``)."""
    cloud: bool = True
    """The backend answers (a nonce over mutual TLS)."""
    ecus: bool = True
    """Every other ECU of the campaign answers and still runs its new image."""
    command: list[str] = field(default_factory=list)
    """A command that must exit 0 (argv, no shell)."""
    timeout_s: float = 300.0
    """How long the checks may keep failing after the start before the image is rejected."""
    interval_s: float = 5.0
    """Pause between two rounds of checks."""

    def __post_init__(self) -> None:
        if self.timeout_s < 0 or self.interval_s <= 0:
            raise ValueError("timeout-s must be >= 0 and interval-s > 0")


@dataclass(frozen=True)
class SelfSettings:
    """``[master.self]``: the TBox's own A/B slots, so campaigns update its rootfs."""

    slots: SlotsConfig
    """Same shape as a Sub's ``[slots]`` (docs/boot.md)."""
    health: SelfHealthSettings = field(default_factory=SelfHealthSettings)
    reboot_command: list[str] = field(default_factory=lambda: ["systemctl", "reboot"])

    def __post_init__(self) -> None:
        if not self.reboot_command:
            raise ValueError("reboot-command must name a command")


@dataclass(frozen=True)
class MasterConfig:
    vin: str
    ecu_key: Path
    """Signs the vehicle manifest (and, unless an ECU names its own, UDS/self manifests)."""
    cloud: CloudSettings
    trust: TrustSettings
    someip: SomeIpSettings
    ecus: list[EcuSpec]
    state_dir: Path = Path("/var/lib/redstone/master")
    cache: CacheSettings = field(default_factory=CacheSettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    consent: Literal["auto", "ask", "ask-before-activation", "required"] = "auto"
    """``auto``: ask only when the campaign says so (cloud ``consent_required``);
    ``ask``: always ask before any ECU is touched; ``ask-before-activation``: Subs
    receive their images in the background, and the first step the driver would
    notice (a UDS flash, a reboot) waits for the accept. ``required`` = ``ask``."""
    vehicle: VehicleSettings | None = None
    """CAN-signal preconditions; without it nothing about the vehicle's state is checked."""
    diagnostics: DiagnosticsSettings = field(default_factory=DiagnosticsSettings)
    dbus: str = "system"
    """Where ``org.redstone.Master1`` is published: ``system``, ``session``, ``none``,
    or a bus address (``unix:path=/run/dbus/system_bus_socket``)."""
    log_format: Literal["text", "json"] = "text"
    activation: Literal["as-ready", "together"] = "as-ready"
    """``as-ready``: each ECU switches to its new image as soon as it holds it (the
    shortest campaign; still all-or-nothing, as nothing commits before every ECU is
    healthy); ``together``: no ECU switches before every ECU holds its new image."""
    self: SelfSettings | None = None
    """``[master.self]``; without it the TBox only reports its manifest and a campaign
    naming it is refused."""

    @property
    def primary(self) -> EcuSpec:
        return next(e for e in self.ecus if e.kind is EcuKind.SELF)

    def ecu(self, serial: str) -> EcuSpec | None:
        return next((e for e in self.ecus if e.serial == serial), None)

    def by_kind(self, *kinds: EcuKind) -> Iterator[EcuSpec]:
        return (e for e in self.ecus if e.kind in kinds)


def load_master_config(path: Path | str) -> MasterConfig:
    """Read and check ``path`` (its ``[master]`` table); relative paths are file-relative."""
    config = load(path, MasterConfig, section="master")
    check_topology(config, str(path))
    return config


def check_topology(config: MasterConfig, source: str) -> None:
    """Cross-ECU rules the per-field conversion cannot see."""
    selves = [i for i, e in enumerate(config.ecus) if e.kind is EcuKind.SELF]
    if len(selves) != 1:
        raise ConfigError(
            source, "master.ecus", f"expected exactly one ECU of kind 'self', found {len(selves)}"
        )
    seen: dict[str, int] = {}
    instances: dict[int, str] = {}
    for i, ecu in enumerate(config.ecus):
        key = f"master.ecus[{i}]"
        if ecu.serial in seen:
            raise ConfigError(
                source, f"{key}.serial", f"{ecu.serial!r} repeats ecus[{seen[ecu.serial]}]"
            )
        seen[ecu.serial] = i
        if ecu.kind is EcuKind.SUB:
            other = instances.get(ecu.instance_id)
            if other is not None:
                raise ConfigError(
                    source,
                    f"{key}.instance-id",
                    f"{ecu.instance_id} is already used by {other} (address clash)",
                )
            instances[ecu.instance_id] = ecu.serial
    for i, ecu in enumerate(config.ecus):
        for j, dep in enumerate(ecu.depends_on):
            if dep not in seen:
                raise ConfigError(
                    source, f"master.ecus[{i}].depends-on[{j}]", f"no ECU has serial {dep!r}"
                )
            if config.ecus[seen[dep]].group > ecu.group:
                raise ConfigError(
                    source,
                    f"master.ecus[{i}].depends-on[{j}]",
                    f"{dep} is in a later group ({config.ecus[seen[dep]].group} > {ecu.group})",
                )
    _check_behind(config, source, seen)
    _check_tbox(config, source)
    _check_cycles(config, source)
    _check_uds_addresses(config, source)


def _check_behind(config: MasterConfig, source: str, seen: dict[str, int]) -> None:
    """``behind`` names another ECU of this vehicle, of kind sub."""
    for i, ecu in enumerate(config.ecus):
        if not ecu.behind:
            continue
        key = f"master.ecus[{i}].behind"
        if ecu.behind == ecu.serial:
            raise ConfigError(source, key, f"{ecu.serial} cannot be behind itself")
        if ecu.behind not in seen:
            raise ConfigError(source, key, f"no ECU has serial {ecu.behind!r}")
        host = config.ecus[seen[ecu.behind]]
        if host.kind is not EcuKind.SUB:
            raise ConfigError(
                source, key, f"{ecu.behind} is of kind {host.kind.value!r}, not 'sub'"
            )


def _check_tbox(config: MasterConfig, source: str) -> None:
    """A bootloader ECU: at most one, and it switches the U-Boot env of ``[master.self]``."""
    loaders = [i for i, e in enumerate(config.ecus) if e.kind is EcuKind.BOOTLOADER]
    if len(loaders) > 1:
        raise ConfigError(
            source, f"master.ecus[{loaders[1]}].kind", "only one ECU may be of kind 'bootloader'"
        )
    if not loaders:
        return
    key = f"master.ecus[{loaders[0]}].kind"
    if config.self is None:
        raise ConfigError(
            source, key, "a bootloader ECU needs [master.self] (its U-Boot env and slots)"
        )
    if config.self.slots.bootloader.backend != "uboot":
        raise ConfigError(
            source,
            key,
            "a bootloader ECU updates a U-Boot boot script; [master.self.slots.bootloader] "
            f"backend is {config.self.slots.bootloader.backend!r}",
        )
    where = f"master.ecus[{loaders[0]}].bootscript"
    script = bootscript_config(config.ecus[loaders[0]], source)
    own = config.self.slots.bootloader.uboot.fw_env_config
    if "fw-env-config" in config.ecus[loaders[0]].bootscript and script.uboot.fw_env_config != own:
        raise ConfigError(
            source,
            f"{where}.fw-env-config",
            f"{script.uboot.fw_env_config} is not the TBox's own env ({own}): "
            "the boot script switches in the env its slots use",
        )


def bootscript_config(spec: EcuSpec, source: str) -> BootScriptConfig:
    """The ``bootscript`` table of a bootloader ECU, paths relative to the config file."""
    from redstone_agent.slots.bootscript import BootScriptConfig

    return BootScriptConfig.from_table(
        spec.bootscript, where=f"{source}: ECU {spec.serial} bootscript", base=Path(source).parent
    )


def _check_cycles(config: MasterConfig, source: str) -> None:
    deps = {e.serial: e.depends_on for e in config.ecus}
    done: set[str] = set()

    def visit(serial: str, path: tuple[str, ...]) -> None:
        if serial in path:
            cycle = " -> ".join((*path[path.index(serial) :], serial))
            raise ConfigError(source, "master.ecus", f"dependency cycle {cycle}")
        if serial in done:
            return
        for dep in deps[serial]:
            visit(dep, (*path, serial))
        done.add(serial)

    for serial in deps:
        visit(serial, ())


def _check_uds_addresses(config: MasterConfig, source: str) -> None:
    """Two UDS ECUs on one bus must not share CAN ids or a DoIP logical address."""
    from redstone_agent.uds.config import load_ecu  # only configs with UDS ECUs pay for it

    claimed: dict[tuple[str, str], str] = {}
    for i, ecu in enumerate(config.ecus):
        if not ecu.kind.is_uds or ecu.behind:
            continue  # an ECU behind a Sub: the Sub's config holds its addressing
        key = f"master.ecus[{i}].uds-config"
        assert ecu.uds_config is not None
        try:
            uds = load_ecu(ecu.uds_config)
        except ConfigError as exc:
            raise ConfigError(source, key, str(exc)) from None
        if (uds.transport == "docan") != (ecu.kind is EcuKind.UDS_DOCAN):
            raise ConfigError(
                source, key, f"{ecu.uds_config} uses transport {uds.transport!r}, ECU is {ecu.kind}"
            )
        if uds.transport == "docan":
            ids = [f"can-id {uds.docan.tx_id:#x}", f"can-id {uds.docan.rx_id:#x}"]
        else:
            ids = [f"doip-address {uds.doip.logical_address:#x}"]
        for ident in ids:
            owner = claimed.get((ecu.bus_name, ident))
            if owner is not None:
                raise ConfigError(
                    source, key, f"{ident} on bus {ecu.bus_name} is also used by {owner}"
                )
            claimed[(ecu.bus_name, ident)] = ecu.serial
