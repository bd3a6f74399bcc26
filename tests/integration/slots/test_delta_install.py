"""A delta target installs like a full one: applied against the running slot, verified."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import pytest

from redstone_agent.delta.format import HEADER_SIZE, encode_header
from redstone_agent.delta.make import make_delta
from redstone_agent.delta.reader import read_header
from redstone_agent.slots import InstallFailed, NodeState, SlotManager
from redstone_agent.slots.virtual import VirtualNode
from tests.integration.slots.conftest import Image, make_image, slot_sha256


@pytest.fixture
def node(tmp_path: Path) -> VirtualNode:
    """One backend is enough here: the delta path does not touch the bootloader."""
    return VirtualNode.create(tmp_path / "node")


@pytest.fixture
def image(tmp_path: Path) -> Image:
    return make_image(tmp_path / "v1.img", 1 << 20)


def evolve(old: Image, path: Path) -> Image:
    """A new version: most blocks unchanged, some edited, some moved, a tail appended."""
    data = bytearray(old.path.read_bytes())
    data[100_000:100_040] = b"patched-config-value-v2".ljust(40, b".")
    data[700_000:760_000] = data[300_000:360_000]
    data += b"new feature" * 5000
    path.write_bytes(bytes(data))
    return Image(path, hashlib.sha256(data).hexdigest(), len(data))


def make(old: Image, new: Image, out: Path) -> Path:
    with out.open("wb") as handle:
        make_delta(old.path, new.path, handle, jobs=1)
    return out


def install_base(node: VirtualNode, manager: SlotManager, image: Image) -> None:
    """Bring the node to: slot B runs ``image``, committed."""
    manager.install(str(image.path), sha256=image.sha256)
    assert node.reboot() == "B"
    manager.mark_good()


def test_delta_against_a_recorded_image(
    node: VirtualNode, manager: SlotManager, image: Image, tmp_path: Path
) -> None:
    install_base(node, manager, image)
    new = evolve(image, tmp_path / "v2.img")
    delta = make(image, new, tmp_path / "v1-v2.delta")
    assert delta.stat().st_size < new.size // 4
    status = manager.install(str(delta), sha256=new.sha256, size=new.size)
    assert status.state is NodeState.INSTALLED
    assert slot_sha256(node.config.A.device, new.size) == new.sha256
    assert node.reboot() == "A"


def test_delta_against_an_unrecorded_factory_slot_hashes_it(
    node: VirtualNode, image: Image, tmp_path: Path
) -> None:
    # The factory wrote slot A; the node has no record of which image that is.
    with node.config.A.device.open("r+b") as handle:
        handle.write(image.path.read_bytes())
    new = evolve(image, tmp_path / "v2.img")
    delta = make(image, new, tmp_path / "d")
    status = SlotManager(node.config).install(str(delta), sha256=new.sha256)
    assert status.state is NodeState.INSTALLED
    assert slot_sha256(node.config.B.device, new.size) == new.sha256


def test_delta_for_another_source_is_refused(
    node: VirtualNode, manager: SlotManager, image: Image, tmp_path: Path
) -> None:
    install_base(node, manager, image)
    other = make_image(tmp_path / "other.img", image.size, seed=99)
    new = evolve(other, tmp_path / "v2.img")
    delta = make(other, new, tmp_path / "d")
    with pytest.raises(InstallFailed, match="delta is for source sha256"):
        manager.install(str(delta), sha256=new.sha256)
    assert node.reboot() == "B"
    assert manager.status().primary == "B"


def test_truncated_delta_fails_cleanly(
    node: VirtualNode, manager: SlotManager, image: Image, tmp_path: Path
) -> None:
    install_base(node, manager, image)
    new = evolve(image, tmp_path / "v2.img")
    delta = make(image, new, tmp_path / "d")
    cut = tmp_path / "cut.delta"
    cut.write_bytes(delta.read_bytes()[: delta.stat().st_size // 2])
    with pytest.raises(InstallFailed, match="truncated"):
        manager.install(str(cut), sha256=new.sha256)
    assert node.reboot() == "B"


def test_delta_whose_header_lies_about_its_result_is_refused_by_the_slot_writer(
    node: VirtualNode, manager: SlotManager, image: Image, tmp_path: Path
) -> None:
    """Every block true to its own hash, the header claiming the expected image: the delta
    layer leaves the whole-image check to the slot writer (one hash pass, not two), which
    refuses what it wrote, and the running slot stays primary."""
    install_base(node, manager, image)
    new = evolve(image, tmp_path / "v2.img")
    other = evolve(image, tmp_path / "v2-other.img")
    data = bytearray(other.path.read_bytes())
    data[5] ^= 0xFF
    other.path.write_bytes(bytes(data))
    honest = make(image, other, tmp_path / "other.delta").read_bytes()
    header = dataclasses.replace(
        read_header(io.BytesIO(honest)), target_sha256=bytes.fromhex(new.sha256)
    )
    forged = tmp_path / "forged.delta"
    forged.write_bytes(encode_header(header) + honest[HEADER_SIZE:])
    with pytest.raises(InstallFailed, match=f"has SHA-256 [0-9a-f]{{64}}, expected {new.sha256}"):
        manager.install(str(forged), sha256=new.sha256, size=new.size)
    assert node.reboot() == "B"
    assert manager.status().primary == "B"
