"""Wheels for the guest: the project's own (built each time) and its dependencies (cached).

The guest runs Debian 12's python3.11 on x86_64, like the host, so the host's
``pip download`` picks the right binary wheels. The dependency wheelhouse
(``wheelhouse`` entry) is keyed by ``pyproject.toml`` only; the project wheel
is rebuilt for every image (``pip wheel --no-deps``, ~3 s).
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


def build_project_wheel(directory: Path) -> Path:
    """``pip wheel --no-deps`` of this checkout into ``directory``; the wheel's path."""
    directory.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", directory, REPO])
    wheels = sorted(directory.glob("redstone_ota-*.whl"))
    if len(wheels) != 1:
        raise HarnessError(f"pip wheel left {len(wheels)} project wheels in {directory}")
    return wheels[0]


def dependency_wheelhouse() -> Path:
    """The cached directory of every dependency wheel of :data:`REQUIREMENT`."""
    key = input_key([REPO / "pyproject.toml", EXTRAS, sys.version.split()[0]])

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
