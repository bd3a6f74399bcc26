"""U-Boot environment through libubootenv's ``fw_printenv`` / ``fw_setenv``."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from redstone_agent.slots.bootloader.base import BootEnv, first_line, parse_assignments, run_tool
from redstone_agent.slots.config import UBootConfig
from redstone_agent.slots.errors import BootEnvCorrupt, BootloaderError

PACKAGE = "libubootenv-tool"


class UBootEnv(BootEnv):
    """The env block described by ``fw_env.config`` (a partition, an MTD or a file)."""

    def __init__(self, config: UBootConfig) -> None:
        self.config = config
        self.description = f"U-Boot env ({config.fw_env_config})"

    def read(self) -> dict[str, str]:
        self._require_config()
        result = run_tool([self.config.fw_printenv, "-c", str(self.config.fw_env_config)], PACKAGE)
        if result.returncode != 0:
            raise BootEnvCorrupt(
                f"{self.description} cannot be read: {first_line(result.stderr)} "
                "(bad CRC, uninitialised, or a wrong fw_env.config)"
            )
        return parse_assignments(result.stdout)

    def _write(self, values: Mapping[str, str]) -> None:
        self._setenv(values, defaults=None)

    def _initialise(self, values: Mapping[str, str]) -> None:
        try:
            self.read()
        except BootEnvCorrupt:
            # A blank or corrupt block: libubootenv starts from a defaults file. Only
            # the board's own defaults may be used — an env without bootcmd bricks.
            if self.config.defaults is None:
                raise BootEnvCorrupt(
                    f"{self.description} is unreadable and no board defaults file is configured "
                    "([slots.bootloader.uboot] defaults); refusing to write an env without them"
                ) from None
            self._setenv(values, defaults=self.config.defaults)
            return
        self._setenv(values, defaults=None)

    def _setenv(self, values: Mapping[str, str], defaults: Path | None) -> None:
        self._require_config()
        script = "".join(f"{key}={value}\n" for key, value in values.items())
        with tempfile.NamedTemporaryFile("w", prefix="redstone-env-", suffix=".txt") as handle:
            handle.write(script)
            handle.flush()
            argv = [self.config.fw_setenv, "-c", str(self.config.fw_env_config)]
            if defaults is not None:
                argv += ["-f", str(defaults)]
            result = run_tool([*argv, "-s", handle.name], PACKAGE)
        if result.returncode != 0:
            raise BootloaderError(
                f"{self.description}: fw_setenv failed: {first_line(result.stderr)}"
            )

    def _require_config(self) -> None:
        if not self.config.fw_env_config.is_file():
            raise BootloaderError(f"{self.description}: configuration file not found")
