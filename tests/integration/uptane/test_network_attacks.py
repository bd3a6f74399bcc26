"""Attacks on the wire, against the Primary's fetcher over a real socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.uptane.errors import DownloadError
from tests.integration.uptane.conftest import Published


def test_endless_data_oversized_metadata_rejected(published: Published, tmp_path: Path) -> None:
    """timestamp.json that never ends: the 16 KiB cap stops the download."""
    published.server.faults["/director/metadata/timestamp.json"] = "endless"
    with pytest.raises(
        DownloadError,
        match=r"director repository: Downloaded \d+ bytes exceeding .* length of 16384",
    ):
        published.verifier(tmp_path / "cache").refresh()


def test_endless_data_oversized_target_rejected(published: Published, tmp_path: Path) -> None:
    """A target URL streaming forever: capped at the verified length, part file removed."""
    verifier = published.verifier(tmp_path / "cache")
    target = verifier.refresh().targets["ABS-1"]
    published.server.faults[f"/image/targets/brakes/{target.sha256}.abs-1.4.bin"] = "endless"
    with pytest.raises(DownloadError, match="more than the verified"):
        verifier.download(target, tmp_path / "abs.bin")
    assert not (tmp_path / "abs.bin.part").exists()


def test_slow_retrieval_rejected(published: Published, tmp_path: Path) -> None:
    """Each byte arrives within the read timeout, but the file never finishes in time."""
    published.server.faults["/director/metadata/timestamp.json"] = "slow"
    with pytest.raises(DownloadError, match=r"director repository: .*not complete within 0\.3 s"):
        published.verifier(tmp_path / "cache", file_deadline=0.3).refresh()
