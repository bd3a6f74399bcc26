"""Wheels for the guest: the project's own (built each time) and its dependencies (cached).

The guest runs Debian 12's python3.11 on x86_64, like the host, so the host's
``pip download`` picks the right binary wheels; for the aarch64 image it asks for
``manylinux_2_17_aarch64`` wheels of CPython 3.11 (every dependency publishes them). The
dependency wheelhouse (``wheelhouse`` entry) is keyed by ``pyproject.toml`` and the
foreign platform only; the project wheel is rebuilt for every image (``pip wheel
--no-deps``, ~3 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tools.qemu.cache import cached, input_key
from tools.qemu.errors import HarnessError
from tools.qemu.run import run

REPO = Path(__file__).resolve().parents[3]
EXTRAS = "uds,someip,dbus,master,vehicle"
"""What a vehicle image installs (the Yocto recipe's packages): no cloud, no delta tools."""
REQUIREMENT = f"redstone-ota[{EXTRAS}]"
HOUSE = "wheels"
PLATFORMS = {
    "arm64": ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"),
}
"""Wheel platform tags of a foreign guest (Debian 12: glibc 2.36, CPython 3.11)."""


def build_project_wheel(directory: Path) -> Path:
    """``pip wheel --no-deps`` of this checkout into ``directory``; the wheel's path."""
    directory.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", directory, REPO])
    wheels = sorted(directory.glob("redstone_ota-*.whl"))
    if len(wheels) != 1:
        raise HarnessError(f"pip wheel left {len(wheels)} project wheels in {directory}")
    return wheels[0]


def dependency_wheelhouse(arch: str = "amd64") -> Path:
    """The cached directory of every dependency wheel of :data:`REQUIREMENT` for ``arch``."""
    platforms = PLATFORMS.get(arch, ())
    key = input_key([REPO / "pyproject.toml", EXTRAS, sys.version.split()[0], *platforms])
    target: list[str] = []
    if platforms:
        target = [f"--platform={tag}" for tag in platforms]
        target += ["--python-version=3.11", "--implementation=cp"]
        target += ["--abi=cp311", "--abi=abi3", "--abi=none"]

    def build(out: Path) -> None:
        project = build_project_wheel(out / "project")
        house = out / HOUSE
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--only-binary=:all:",
                *target,
                "--find-links",
                project.parent,
                "-d",
                house,
                REQUIREMENT,
            ]
        )
        for wheel in house.glob("redstone_ota-*.whl"):
            wheel.unlink()
        project.unlink()
        project.parent.rmdir()

    return cached("wheelhouse", key, build) / HOUSE
