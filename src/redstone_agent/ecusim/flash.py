"""Flash memory model: erase to 0xFF, program only erased cells, CRC, one or two banks."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from redstone_agent.uds.config import Region

ERASED = 0xFF


class FlashFault(Exception):
    """Programming failed (cells not erased, out of range): the ECU answers NRC 0x72."""


@dataclass
class Bank:
    """One copy of every region plus the bootloader's bookkeeping about it."""

    cells: dict[str, bytearray]
    valid: bool = False
    """The bootloader may start this bank (set by the dependency check)."""
    written: dict[str, int] = field(default_factory=dict)
    """Bytes programmed per region by the last download."""
    checked: dict[str, bool] = field(default_factory=dict)
    """Per region: did the last check-memory routine pass?"""


class FlashMemory:
    """All banks; with ``dual_bank`` flashing targets the bank that is not running."""

    def __init__(self, regions: list[Region], dual_bank: bool) -> None:
        self.regions = {r.name: r for r in regions}
        count = 2 if dual_bank else 1
        self.banks = [
            Bank({r.name: bytearray([ERASED]) * r.size for r in regions}) for _ in range(count)
        ]
        self.active = 0
        self.pending: int | None = None
        """Bank to start at the next reset (dual bank only)."""

    @property
    def dual_bank(self) -> bool:
        return len(self.banks) == 2

    @property
    def target(self) -> int:
        """The bank a download programs."""
        return 1 - self.active if self.dual_bank else self.active

    def region_at(self, address: int, size: int) -> Region | None:
        """The region that wholly contains ``[address, address + size)``."""
        for region in self.regions.values():
            if region.address <= address and address + size <= region.address + region.size:
                return region
        return None

    def erase(self, region: str) -> None:
        bank = self.banks[self.target]
        bank.cells[region][:] = bytes([ERASED]) * len(bank.cells[region])
        bank.valid = False
        bank.written[region] = 0
        bank.checked[region] = False
        if self.pending == self.target:
            self.pending = None

    def is_erased(self, region: str, offset: int, size: int) -> bool:
        cells = self.banks[self.target].cells[region]
        return cells[offset : offset + size].count(ERASED) == size

    def program(self, region: str, offset: int, data: bytes) -> None:
        cells = self.banks[self.target].cells[region]
        if offset + len(data) > len(cells):
            raise FlashFault("write beyond the region")
        if not self.is_erased(region, offset, len(data)):
            raise FlashFault("cells not erased")
        cells[offset : offset + len(data)] = data
        bank = self.banks[self.target]
        bank.written[region] = max(bank.written.get(region, 0), offset + len(data))

    def crc(self, region: str) -> int:
        bank = self.banks[self.target]
        return zlib.crc32(bank.cells[region][: bank.written.get(region, 0)])

    def read_active(self, region: str, offset: int, size: int) -> bytes:
        return bytes(self.banks[self.active].cells[region][offset : offset + size])

    def load_image(self, bank: int, region: str, image: bytes) -> None:
        """Factory programming: put ``image`` into ``bank`` and mark it valid."""
        self.banks[bank].cells[region][: len(image)] = image
        self.banks[bank].written[region] = len(image)
        self.banks[bank].checked[region] = True
        self.banks[bank].valid = True
