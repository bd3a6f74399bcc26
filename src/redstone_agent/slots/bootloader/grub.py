"""GRUB environment block through ``grub-editenv``."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from redstone_agent.slots.bootloader.base import BootEnv, first_line, parse_assignments, run_tool
from redstone_agent.slots.config import GrubConfig
from redstone_agent.slots.errors import BootEnvCorrupt, BootloaderError

PACKAGE = "grub-common"


class GrubEnv(BootEnv):
    """The 1 KiB ``grubenv`` block that ``load_env``/``save_env`` use at boot."""

    def __init__(self, config: GrubConfig) -> None:
        self.config = config
        self.description = f"GRUB env ({config.envfile})"

    def read(self) -> dict[str, str]:
        # grub-editenv would silently create a missing file; a missing env is an error.
        if not self.config.envfile.is_file():
            raise BootEnvCorrupt(f"{self.description}: file not found")
        result = self._editenv("list")
        if result.returncode != 0:
            raise BootEnvCorrupt(f"{self.description} cannot be read: {first_line(result.stderr)}")
        return parse_assignments(result.stdout)

    def _write(self, values: Mapping[str, str]) -> None:
        result = self._editenv("set", *(f"{k}={v}" for k, v in values.items()))
        if result.returncode != 0:
            raise BootloaderError(
                f"{self.description}: grub-editenv failed: {first_line(result.stderr)}"
            )

    def _initialise(self, values: Mapping[str, str]) -> None:
        try:
            self.read()
        except BootEnvCorrupt:
            self.config.envfile.parent.mkdir(parents=True, exist_ok=True)
            result = self._editenv("create")
            if result.returncode != 0:
                raise BootloaderError(
                    f"{self.description}: grub-editenv create failed: {first_line(result.stderr)}"
                ) from None
        self.write(values)

    def _editenv(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_tool([self.config.grub_editenv, str(self.config.envfile), *args], PACKAGE)
