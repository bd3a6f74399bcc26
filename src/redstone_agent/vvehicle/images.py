"""The images the campaigns ship: deterministic, versioned, delta-friendly — pure.

Every image starts with its version string (NUL padded to 16 bytes): the ECU
simulator reports exactly those bytes as its version DID after a flash, and
a Sub's image is readable the same way. Later versions change a few small
regions of the previous one, like a real release does, so the cloud's
server-side delta is a fraction of the full image.
"""

from __future__ import annotations

import hashlib
import random

from redstone_agent.master.topology import EcuKind
from redstone_agent.vvehicle.plan import RELEASES, VERSION_LENGTH, EcuPlan

SUB_IMAGE_SIZE = 1 << 20
SUB_SLOT_SIZE = 2 << 20
UDS_IMAGE_SIZE = 32 << 10
"""Small enough that a flash over udp_multicast CAN takes seconds, not minutes."""


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:8], "big")


def header(version: str) -> bytes:
    """The version field every image starts with."""
    raw = version.encode("ascii")
    if len(raw) > VERSION_LENGTH:
        raise ValueError(f"version {version!r} is longer than {VERSION_LENGTH} bytes")
    return raw.ljust(VERSION_LENGTH, b"\0")


def image(ecu: EcuPlan, version: str) -> bytes:
    """The image of *ecu* at *version*: the factory image plus one small change per release."""
    size = SUB_IMAGE_SIZE if ecu.kind is EcuKind.SUB else UDS_IMAGE_SIZE
    base = random.Random(_seed(ecu.role, "factory"))
    if ecu.kind is EcuKind.SUB:
        body = bytearray(base.randbytes(size - VERSION_LENGTH))
    else:
        # Compressible like real firmware (the Master may send it zlib-compressed).
        pattern = base.randbytes(256)
        body = bytearray((pattern * (size // 256 + 1))[: size - VERSION_LENGTH])
    for release in RELEASES[1 : RELEASES.index(version) + 1]:
        rng = random.Random(_seed(ecu.role, release))
        for _ in range(4):
            at = rng.randrange(0, len(body) - 512)
            body[at : at + 512] = rng.randbytes(512)
    return header(version) + bytes(body)


def version_of(data: bytes) -> str:
    """The version an image (or a slot holding one) starts with."""
    return data[:VERSION_LENGTH].rstrip(b"\0\xff").decode("ascii", "replace")
