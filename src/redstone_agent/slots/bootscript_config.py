"""Where the two boot-script copies live and which env variable selects one.

The ``bootscript`` table of a ``kind = "bootloader"`` ECU in ``master.toml``
(docs/boot.md, "Boot script and bootloader update")::

    [master.ecus.bootscript]
    variable = "redstone_script"          # env variable: "A" or "B" (unset = A)
    fw-env-config = "/etc/fw_env.config"  # libubootenv config of the U-Boot env
    state-dir = "/var/lib/redstone"       # the store's journal
    require-redundant-env = true          # false only for a single-copy test board
    A = { device = "/dev/mmcblk0p5" }     # raw partition, or a file; offset, size optional
    B = { device = "/dev/mmcblk0p6", offset = 0, size = 524288 }
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from redstone_agent.config import ConfigError
from redstone_agent.slots.config import UBootConfig

T = TypeVar("T")
COPIES = ("A", "B")
DEFAULT_VARIABLE = "redstone_script"
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TABLE_KEYS = frozenset(
    {"variable", "fw-env-config", "fw-env-defaults", "state-dir", "require-redundant-env", *COPIES}
)
COPY_KEYS = frozenset({"device", "offset", "size"})


@dataclass(frozen=True)
class CopyConfig:
    """One copy: a raw partition, a region of a device at ``offset``, or a file."""

    device: Path
    offset: int = 0
    size: int | None = None
    """Bytes the copy may hold. Default: the device's (or file's) size minus ``offset``."""

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, got {self.offset}")
        if self.size is not None and self.size <= 0:
            raise ValueError(f"size must be a positive number of bytes, got {self.size}")


@dataclass(frozen=True)
class BootScriptConfig:
    """Two copies of the compiled boot script and the env variable that picks one."""

    copies: Mapping[str, CopyConfig]
    """``A`` and ``B`` (a config with fewer is accepted here and refused on update)."""
    variable: str = DEFAULT_VARIABLE
    uboot: UBootConfig = field(default_factory=UBootConfig)
    state_dir: Path = Path("/var/lib/redstone")
    require_redundant_env: bool = True
    """Refuse to update unless ``fw_env.config`` names two env copies (docs/boot.md)."""

    def __post_init__(self) -> None:
        if not VARIABLE.fullmatch(self.variable):
            raise ValueError(f"variable {self.variable!r} is not a U-Boot env variable name")
        unknown = set(self.copies) - set(COPIES)
        if unknown:
            raise ValueError(f"copies are named A and B, not {sorted(unknown)[0]!r}")

    @property
    def journal(self) -> Path:
        """The store's journal (one per selector variable, so two stores never share one)."""
        return self.state_dir / f"bootscript-{self.variable}.json"

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], *, where: str, base: Path | None = None
    ) -> BootScriptConfig:
        """The config from a TOML table; one-line :class:`ConfigError` naming ``where`` and
        the key. Relative paths are taken relative to ``base`` when given."""
        unknown = sorted(set(table) - TABLE_KEYS)
        if unknown:
            raise ConfigError(where, unknown[0], f"unknown key (expected {_keys(TABLE_KEYS)})")
        copies = {
            name: _copy(table[name], f"{where}.{name}", base) for name in COPIES if name in table
        }
        if not copies:
            raise ConfigError(where, "A", "no copies: a bootscript needs A and B")
        variable = _get(table, "variable", str, where, DEFAULT_VARIABLE)
        env = _path(_get(table, "fw-env-config", str, where, "/etc/fw_env.config"), base)
        defaults = _get(table, "fw-env-defaults", str, where, "")
        state_dir = _path(_get(table, "state-dir", str, where, "/var/lib/redstone"), base)
        redundant = _get(table, "require-redundant-env", bool, where, True)
        try:
            return cls(
                copies=copies,
                variable=variable,
                uboot=UBootConfig(
                    fw_env_config=env, defaults=_path(defaults, base) if defaults else None
                ),
                state_dir=state_dir,
                require_redundant_env=redundant,
            )
        except ValueError as exc:
            raise ConfigError(where, "variable", str(exc)) from None


def _copy(raw: Any, where: str, base: Path | None) -> CopyConfig:
    if isinstance(raw, str):
        raw = {"device": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "", "expected a table { device = ..., offset = ..., size = ... }")
    unknown = sorted(set(raw) - COPY_KEYS)
    if unknown:
        raise ConfigError(where, unknown[0], f"unknown key (expected {_keys(COPY_KEYS)})")
    if "device" not in raw:
        raise ConfigError(where, "device", "missing (a partition, device or file)")
    device = _path(_get(raw, "device", str, where, ""), base)
    offset = _get(raw, "offset", int, where, 0)
    size = _get(raw, "size", int, where, 0)
    try:
        return CopyConfig(device, offset, size or None)
    except ValueError as exc:
        raise ConfigError(where, "offset" if "offset" in str(exc) else "size", str(exc)) from None


def _get(table: Mapping[str, Any], key: str, kind: type[T], where: str, default: T) -> T:
    value = table.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(where, key, f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _path(text: str, base: Path | None) -> Path:
    path = Path(text)
    return base / path if base is not None and not path.is_absolute() else path


def _keys(keys: frozenset[str]) -> str:
    return ", ".join(sorted(keys))
