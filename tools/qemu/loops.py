"""Loop devices over partitions of a disk image, so the agent sees real block devices.

Partition scanning needs udev to create ``/dev/loopNpM`` nodes, which
containers often lack; one loop device per partition (``--offset`` and
``--sizelimit``) needs nothing but root.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tools.qemu.layout import Partition
from tools.qemu.run import run


@contextmanager
def loop_device(image: Path, part: Partition) -> Iterator[Path]:
    """A loop device showing exactly ``part`` of ``image``; detached on exit."""
    device = run(
        [
            "losetup",
            "--find",
            "--show",
            "--offset",
            str(part.offset),
            "--sizelimit",
            str(part.size),
            image,
        ]
    ).strip()
    try:
        yield Path(device)
    finally:
        run(["losetup", "--detach", device])


@contextmanager
def partition_devices(image: Path, parts: dict[str, Partition]) -> Iterator[dict[str, Path]]:
    """Loop devices for several partitions at once, keyed like ``parts``."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(loop_device(image, part)) for name, part in parts.items()}
