"""Each bad input: one clear error, and the running slot stays primary."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from redstone_agent.errors import RedstoneError
from redstone_agent.retry import RetryPolicy
from redstone_agent.slots import (
    BootEnvCorrupt,
    BootloaderError,
    InstallFailed,
    NodeState,
    SlotManager,
    UnsafeTarget,
)
from redstone_agent.slots.config import SlotConfig
from redstone_agent.slots.virtual import VirtualNode
from tests.integration.slots.conftest import Image

FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01, timeout=2.0)


class DyingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the whole image, sends half, then drops the connection — every time."""

    payload = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.connection.shutdown(2)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def dying_server(image: Image) -> Iterator[str]:
    handler = type("Handler", (DyingHandler,), {"payload": image.path.read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/rootfs.img"
    server.shutdown()
    server.server_close()


def assert_old_slot_primary(node: VirtualNode) -> None:
    assert node.bootenv.load_state().primary == "A"
    assert node.reboot() == "A"


def test_wrong_hash(node: VirtualNode, manager: SlotManager, image: Image) -> None:
    wrong = "0" * 64
    with pytest.raises(InstallFailed, match=f"expected {wrong}") as info:
        manager.install(str(image.path), sha256=wrong)
    assert "\n" not in str(info.value)
    status = manager.status()
    assert status.state is NodeState.IDLE and status.last_error
    assert_old_slot_primary(node)


def test_short_source(node: VirtualNode, manager: SlotManager, image: Image) -> None:
    with pytest.raises(InstallFailed):
        manager.install(str(image.path), sha256=image.sha256, size=image.size + 1)
    assert_old_slot_primary(node)


def test_http_server_dying_mid_stream(
    node: VirtualNode, manager: SlotManager, image: Image, dying_server: str
) -> None:
    with pytest.raises(InstallFailed, match="slot A stays active"):
        manager.install(dying_server, sha256=image.sha256, retry=FAST_RETRY)
    assert_old_slot_primary(node)


def test_missing_source(node: VirtualNode, manager: SlotManager, tmp_path: Path) -> None:
    with pytest.raises(InstallFailed, match=r"absent\.img"):
        manager.install(str(tmp_path / "absent.img"), sha256="a" * 64)
    assert_old_slot_primary(node)


def test_malformed_sha256_is_refused_before_anything_happens(manager: SlotManager) -> None:
    with pytest.raises(RedstoneError, match="expected 64 hexadecimal digits"):
        manager.install("x", sha256="abc")


def test_device_that_is_not_a_slot(node: VirtualNode, image: Image, tmp_path: Path) -> None:
    directory = tmp_path / "not-a-device"
    directory.mkdir()
    bad = replace(node.config, B=SlotConfig(directory))
    with pytest.raises(UnsafeTarget, match="not a block device or regular file"):
        SlotManager(bad).install(str(image.path), sha256=image.sha256)
    assert_old_slot_primary(node)


def test_env_tool_missing(node: VirtualNode, image: Image) -> None:
    boot = node.config.bootloader
    if boot.backend == "uboot":
        uboot = replace(boot.uboot, fw_setenv="/nonexistent/fw_setenv")
        broken, package = replace(boot, uboot=uboot), "libubootenv-tool"
    else:
        grub = replace(boot.grub, grub_editenv="/nonexistent/grub-editenv")
        broken, package = replace(boot, grub=grub), "grub-common"
    config = replace(node.config, bootloader=broken)
    with pytest.raises(BootloaderError, match=f"not found: install {package}"):
        SlotManager(config).install(str(image.path), sha256=image.sha256)
    assert_old_slot_primary(node)


def test_corrupt_env_refuses_install_until_reinitialised(
    node: VirtualNode, manager: SlotManager, image: Image
) -> None:
    backend = node.config.bootloader.backend
    env_file = node.root / ("uboot.env" if backend == "uboot" else "grubenv")
    raw = bytearray(env_file.read_bytes())
    copies = range(0, len(raw), 0x4000) if backend == "uboot" else [0]  # every redundant copy
    for start in copies:
        raw[start + 8 : start + 64] = bytes(b ^ 0x5A for b in raw[start + 8 : start + 64])
    env_file.write_bytes(bytes(raw))
    with pytest.raises(BootEnvCorrupt):
        manager.install(str(image.path), sha256=image.sha256)
    assert slot_untouched(node)
    status = manager.init_bootenv()
    assert status.state is NodeState.IDLE and status.primary == "A"
    assert manager.install(str(image.path), sha256=image.sha256).state is NodeState.INSTALLED


def test_init_bootenv_will_not_clobber_a_valid_env(manager: SlotManager) -> None:
    with pytest.raises(RedstoneError, match="already holds a valid A/B scheme"):
        manager.init_bootenv()


def slot_untouched(node: VirtualNode) -> bool:
    with node.config.B.device.open("rb") as handle:
        return not any(handle.read(1 << 20))
