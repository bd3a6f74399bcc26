"""The image repository, made offline with ``redstone-repo`` as an OEM's release desk would.

The backend never holds these keys (docs/api.md §4.4): images and the
deltas the backend computed are signed here, and the resulting metadata is
uploaded file by file. A delta is signed only after it was checked to
rebuild the new image from the old one: what we sign, we vouch for.

The commands run in this process (:func:`redstone_agent.cli.repo.execute`: the
same arguments and code as the command line): a release adds about a dozen
targets, and a ``redstone-repo`` process spends half a second importing.
"""

from __future__ import annotations

import io
from pathlib import Path

from redstone_agent.cli import repo as repo_cli
from redstone_agent.delta import apply_delta
from redstone_agent.errors import RedstoneError
from redstone_agent.vvehicle.errors import VehicleError


def _repo(*args: str) -> None:
    try:
        repo_cli.execute(args)
    except RedstoneError as exc:
        raise VehicleError(f"redstone-repo {args[0]}: {exc}") from None


def publication_order(names: list[str]) -> list[str]:
    """Roots first (by version), timestamp last; ``root.json`` is an alias the backend derives."""
    names = [n for n in names if n != "root.json"]

    def key(name: str) -> tuple[int, int, str]:
        first = name.split(".", maxsplit=1)[0]
        version = int(first) if first.isdigit() else 0
        return (not name.endswith("root.json"), "timestamp" in name, f"{version:08d}{name}")

    return sorted(names, key=key)


class ImageRepo:
    """An offline workspace under *workdir* and its published tree."""

    def __init__(self, workdir: Path) -> None:
        self.workspace = workdir / "workspace"
        self.published = workdir / "published"

    def init(self) -> None:
        _repo("init", str(self.workspace), "--name", "image")
        self.publish()

    @property
    def root(self) -> Path:
        """The first root: the trust anchor every Primary and full-verification Sub ships with."""
        return self.published / "metadata" / "1.root.json"

    def add_image(
        self, file: Path, target: str, hardware_id: str, release_counter: int, version: str
    ) -> None:
        self._add_target(file, target, hardware_id, release_counter, "--version", version)

    def add_delta(
        self,
        file: Path,
        target: str,
        hardware_id: str,
        release_counter: int,
        *,
        old: bytes,
        new: bytes,
        source_sha256: str,
    ) -> None:
        """Sign a backend-made delta after checking it turns *old* into *new*."""
        rebuilt = io.BytesIO()
        try:
            with file.open("rb") as delta:
                apply_delta(delta, io.BytesIO(old), rebuilt)
        except (RedstoneError, OSError) as exc:
            raise VehicleError(f"delta {target} does not apply: {exc}") from None
        if rebuilt.getvalue() != new:
            raise VehicleError(f"delta {target} does not rebuild the new image: not signing it")
        self._add_target(
            file, target, hardware_id, release_counter, "--delta-source", source_sha256
        )

    def _add_target(
        self, file: Path, target: str, hardware_id: str, release_counter: int, *extra: str
    ) -> None:
        _repo(
            "add-target",
            str(self.workspace),
            str(file),
            "--path",
            target,
            "--hardware-id",
            hardware_id,
            "--release-counter",
            str(release_counter),
            *extra,
        )

    def sign(self) -> list[tuple[str, bytes]]:
        """Sign the pending changes and return the metadata files in upload order."""
        _repo("sign", str(self.workspace))
        return self.publish()

    def publish(self) -> list[tuple[str, bytes]]:
        _repo("publish", str(self.workspace), str(self.published))
        metadata = self.published / "metadata"
        names = publication_order([p.name for p in metadata.iterdir()])
        return [(name, (metadata / name).read_bytes()) for name in names]
