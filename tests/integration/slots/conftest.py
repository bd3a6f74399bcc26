"""A virtual A/B node on files with the real env tools, and test images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from redstone_agent.slots import SlotManager
from redstone_agent.slots.virtual import VirtualNode
from tests.support import require_tool


@dataclass(frozen=True)
class Image:
    path: Path
    sha256: str
    size: int


def make_image(path: Path, size: int, seed: int = 1) -> Image:
    """Deterministic pseudo-random image bytes (incompressible, like a real rootfs)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB pattern
    data = bytearray()
    counter = 0
    while len(data) < size:
        data += hashlib.sha256(block[:64] + counter.to_bytes(8, "big")).digest() * 4 + block[:4096]
        counter += 1
    del data[size:]
    path.write_bytes(data)
    return Image(path, hashlib.sha256(data).hexdigest(), size)


@pytest.fixture(params=["uboot", "grub"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> VirtualNode:
    require_tool("fw_setenv" if request.param == "uboot" else "grub-editenv")
    return VirtualNode.create(tmp_path / "node", backend=request.param)


@pytest.fixture
def manager(node: VirtualNode) -> SlotManager:
    return SlotManager(node.config)


@pytest.fixture
def image(tmp_path: Path) -> Image:
    return make_image(tmp_path / "rootfs-2.img", 3 * 2**20 + 12345)


def slot_sha256(path: Path, size: int) -> str:
    with path.open("rb") as handle:
        return hashlib.sha256(handle.read(size)).hexdigest()


__all__ = ["Image", "make_image", "slot_sha256"]
