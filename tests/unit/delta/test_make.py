"""make_delta's own contract: progress in target bytes, clear errors for bad inputs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from redstone_agent.delta import DeltaError
from redstone_agent.delta.make import make_delta

from .conftest import random_bytes


def test_progress_counts_target_bytes_up_to_the_total(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(random_bytes(1, 50_000))
    new.write_bytes(random_bytes(1, 50_000)[:30_000] + random_bytes(2, 23_000))
    seen: list[tuple[int, int]] = []
    make_delta(old, new, io.BytesIO(), block_size=8192, jobs=2, progress=lambda *a: seen.append(a))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (53_000, 53_000)
    assert len(seen) == 7


@pytest.mark.parametrize(
    ("block_size", "old_name", "message"),
    [(1000, "old", "block size 1000"), (4096, "missing", "not a file")],
)
def test_bad_inputs(tmp_path: Path, block_size: int, old_name: str, message: str) -> None:
    (tmp_path / "old").write_bytes(b"x" * 100)
    (tmp_path / "new").write_bytes(b"y" * 100)
    with pytest.raises(DeltaError, match=message):
        make_delta(tmp_path / old_name, tmp_path / "new", io.BytesIO(), block_size=block_size)
