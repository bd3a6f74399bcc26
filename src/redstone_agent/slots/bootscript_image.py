"""The legacy U-Boot image header of a compiled boot script (``mkimage -T script``).

Pure parsing, no I/O: the same checks U-Boot's ``source`` and ``iminfo`` make
before they run a script, so an image the agent accepts is one the first-stage
loader accepts, and a torn or foreign image is one it rejects.

Layout (big-endian, 64 bytes, ``include/image.h``)::

    magic 0x27051956 | header CRC32 | time | data size | load | entry | data CRC32
    os | arch | type (6 = script) | compression (0 = none) | name[32]

The header CRC covers the 64 bytes with its own field zeroed; the data CRC the
``data size`` bytes after the header. A script's data is a multi-image table
(big-endian u32 lengths ending with a 0) followed by the script text.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from redstone_agent.slots.bootscript_errors import BadBootScript

MAGIC = 0x27051956
HEADER = struct.Struct(">IIIIIIIBBBB32s")
HEADER_SIZE = HEADER.size
TYPE_SCRIPT = 6
COMPRESSION_NONE = 0
HCRC_OFFSET = 4


@dataclass(frozen=True)
class ScriptImage:
    """A checked legacy script image: its name and total length (header + data)."""

    name: str
    data_size: int

    @property
    def length(self) -> int:
        """Bytes of the whole image (what a copy must hold and the hash covers)."""
        return HEADER_SIZE + self.data_size


def header_length(header: bytes) -> int | None:
    """The whole image's length from a header with valid magic and header CRC, else None.

    Lets a reader fetch exactly the image from a raw copy before checking it all.
    """
    if len(header) < HEADER_SIZE:
        return None
    fields = HEADER.unpack_from(header)
    if fields[0] != MAGIC or fields[1] != _header_crc(header):
        return None
    return HEADER_SIZE + int(fields[3])


def check_script(data: bytes) -> ScriptImage:
    """Check ``data`` as ``source`` would (magic, header CRC, data CRC, type) and more.

    ``data`` must be exactly the image: trailing bytes are refused so that the
    image's SHA-256 is also the hash of what a copy holds. One-line
    :class:`BadBootScript` naming the first fault.
    """
    if len(data) < HEADER_SIZE:
        raise BadBootScript(f"not a U-Boot script image: {len(data)} bytes, header needs 64")
    magic, hcrc, _time, size, _load, _ep, dcrc, _os, _arch, kind, comp, raw_name = (
        HEADER.unpack_from(data)
    )
    if magic != MAGIC:
        raise BadBootScript(f"not a U-Boot image: magic {magic:#010x}, expected {MAGIC:#010x}")
    if hcrc != _header_crc(data):
        raise BadBootScript("U-Boot image header CRC mismatch (corrupt or truncated header)")
    if kind != TYPE_SCRIPT:
        raise BadBootScript(f"U-Boot image type {kind} is not a script (6); mkimage -T script")
    if comp != COMPRESSION_NONE:
        raise BadBootScript(f"U-Boot script is compressed (type {comp}); mkimage -C none")
    if len(data) != HEADER_SIZE + size:
        raise BadBootScript(
            f"U-Boot script image is {len(data)} bytes, its header says {HEADER_SIZE + size}"
        )
    payload = data[HEADER_SIZE:]
    if zlib.crc32(payload) != dcrc:
        raise BadBootScript("U-Boot script data CRC mismatch (corrupt or truncated data)")
    _check_script_table(payload)
    name = raw_name.split(b"\0", 1)[0].decode("ascii", "replace")
    return ScriptImage(name, size)


def _header_crc(header: bytes) -> int:
    blank = bytearray(header[:HEADER_SIZE])
    blank[HCRC_OFFSET : HCRC_OFFSET + 4] = b"\0\0\0\0"
    return zlib.crc32(blank)


def _check_script_table(payload: bytes) -> None:
    """The multi-image table: a non-zero first length, a 0 end, the script inside the data."""
    if len(payload) < 8:
        raise BadBootScript("U-Boot script has no length table")
    (first,) = struct.unpack_from(">I", payload)
    if first == 0:
        raise BadBootScript("U-Boot script is empty")
    offset, lengths = 0, []
    while True:
        if offset + 4 > len(payload):
            raise BadBootScript("U-Boot script length table has no end")
        (value,) = struct.unpack_from(">I", payload, offset)
        offset += 4
        if value == 0:
            break
        lengths.append(value)
    if offset + lengths[0] > len(payload):
        raise BadBootScript(
            f"U-Boot script says {lengths[0]} bytes, the image holds {len(payload) - offset}"
        )
