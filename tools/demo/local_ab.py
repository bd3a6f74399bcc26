"""A single node's A/B cycle, good image then bad (tools/demo.sh runs the whole vehicle).

Everything real except the hardware: slot files, the U-Boot env written by the
real fw_setenv, the redstone-sub CLI as its own process, the image streamed
over HTTP and zstd-compressed, ext4 rootfs images built with mkfs.ext4 -d. The
reboot is the virtual bootloader applying the boot script's documented choice
to that env (docs/boot.md); the health check reads the booted slot's rootfs.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import zstandard

from redstone_agent.slots.virtual import VirtualNode

SLOT_SIZE = 32 << 20


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def build_rootfs(work: Path, version: str, *, healthy: bool) -> tuple[Path, str, int]:
    """An ext4 rootfs image from a directory tree, zstd-compressed for transfer."""
    tree = work / f"tree-{version}"
    (tree / "etc/redstone").mkdir(parents=True)
    (tree / "etc/os-release").write_text(f'NAME="Demo ECU OS"\nVERSION_ID="{version}"\n')
    (tree / "etc/redstone/health").write_text("ok\n" if healthy else "app.service failed\n")
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/app").write_bytes(hashlib.sha256(version.encode()).digest() * 4096)
    image = work / f"rootfs-{version}.img"
    image.touch()
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", f"rootfs-{version}", "-d", str(tree), str(image), "16M"],
        check=True,
    )
    data = image.read_bytes()
    packed = work / f"rootfs-{version}.img.zst"
    packed.write_bytes(zstandard.ZstdCompressor(level=10).compress(data))
    return packed, hashlib.sha256(data).hexdigest(), len(data)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def redstone_sub(config: Path, *args: str) -> dict[str, Any]:
    """Run the real CLI; show its log lines; return the status it prints as JSON."""
    command = [sys.executable, "-m", "redstone_agent.cli.sub", "-c", str(config), *args, "--json"]
    print("$ redstone-sub " + " ".join(args), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    sys.stdout.write("".join(f"  {line}\n" for line in result.stderr.splitlines()))
    if result.returncode != 0:
        raise SystemExit(f"demo: redstone-sub {args[0]} failed")
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def health_check(node: VirtualNode, slot: str) -> bool:
    """What the node's health check would do: read the booted rootfs' verdict."""
    device = node.config.A.device if slot == "A" else node.config.B.device
    result = subprocess.run(
        ["debugfs", "-R", "cat /etc/redstone/health", str(device)],
        capture_output=True,
        text=True,
        check=False,
    )
    verdict = result.stdout.strip()
    print(f"  health check on slot {slot}: {verdict or 'no rootfs'}")
    return verdict == "ok"


def expect(status: dict[str, Any], state: str, **fields: str) -> None:
    shown = {k: status[k] for k in ("state", "booted", "primary")}
    print(f"  status: {json.dumps(shown)}")
    wrong = {k: v for k, v in {"state": state, **fields}.items() if status[k] != v}
    if wrong:
        raise SystemExit(f"demo: unexpected status {shown}, wanted {wrong}")


def run(work: Path) -> None:
    say("provisioning a virtual node: two 32 MiB slot files, redundant U-Boot env, booted A")
    node = VirtualNode.create(work / "node", slot_size=SLOT_SIZE)
    config = work / "node" / "sub.toml"
    config.write_text(node.config_toml())
    expect(redstone_sub(config, "status"), "idle", booted="A", primary="A")

    say("building rootfs v2 (healthy) and v3 (broken), serving them over HTTP")
    images = work / "images"
    images.mkdir()
    v2 = build_rootfs(images, "2.0", healthy=True)
    v3 = build_rootfs(images, "3.0", healthy=False)
    server, base = serve(images)
    try:
        say("installing v2 into the inactive slot B (zstd stream over HTTP)")
        status = redstone_sub(
            config, "install", f"{base}/{v2[0].name}", "--sha256", v2[1], "--size", str(v2[2])
        )
        expect(status, "installed", booted="A", primary="B")

        say("reboot: the bootloader spends one try on B")
        print(f"  booted slot {node.reboot()}")
        expect(redstone_sub(config, "status"), "trying", booted="B")
        if not health_check(node, "B"):
            raise SystemExit("demo: v2 should be healthy")
        expect(redstone_sub(config, "mark-good"), "idle", booted="B", primary="B")

        say("installing broken v3 into the now inactive slot A")
        status = redstone_sub(
            config, "install", f"{base}/{v3[0].name}", "--sha256", v3[1], "--size", str(v3[2])
        )
        expect(status, "installed", booted="B", primary="A")
        for attempt in range(1, node.config.tries + 2):
            slot = node.reboot()
            print(f"  reboot {attempt}: booted slot {slot}")
            if slot == "B" or health_check(node, slot):
                break
            print("  not committing: the watchdog reboots the node")
        status = redstone_sub(config, "status")
        expect(status, "rolled-back", booted="B", primary="B")
        print(f"  rollback: {status['rollback']['reason']}")
        expect(redstone_sub(config, "acknowledge"), "idle", booted="B")
    finally:
        server.shutdown()
    say("done: v2 committed on B; broken v3 fell back to B by itself")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the node here (default: a temp dir)")
    args = parser.parse_args()
    for tool in ("fw_setenv", "mkfs.ext4", "debugfs"):
        if shutil.which(tool) is None:
            raise SystemExit(f"demo: {tool} is missing; run as root once so bootstrap installs it")
    if args.workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True)
        run(args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="redstone-demo-") as tmp:
            run(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
