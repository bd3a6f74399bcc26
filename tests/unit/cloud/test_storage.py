"""The filesystem blob store: measured writes, caps, ranges, hostile keys."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest

from redstone_cloud.errors import InvalidInput, NotFound, TooLarge
from redstone_cloud.storage import FilesystemStore


def test_put_measures_and_reads_ranges(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    data = bytes(range(256)) * 3000
    info = store.put("packages/a/1.0", io.BytesIO(data), max_bytes=len(data))
    assert (info.length, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert store.size("packages/a/1.0") == len(data)
    assert b"".join(store.read("packages/a/1.0")) == data
    assert b"".join(store.read("packages/a/1.0", 10, 19)) == data[10:20]
    assert b"".join(store.read("packages/a/1.0", len(data) - 1)) == data[-1:]
    assert store.download_url("packages/a/1.0", 60) is None
    store.delete("packages/a/1.0")
    with pytest.raises(NotFound):
        store.size("packages/a/1.0")
    with pytest.raises(NotFound):
        list(store.read("packages/a/1.0"))


def test_oversized_upload_leaves_nothing(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    with pytest.raises(TooLarge):
        store.put("big", io.BytesIO(b"x" * 1001), max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "/abs", "a/../../b", "a//b", "", "a/./b", "sp ace"]
)
def test_hostile_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidInput):
        FilesystemStore(tmp_path).put(key, io.BytesIO(b"x"), max_bytes=10)


class _Rendezvous(io.RawIOBase):
    """A source that, after its first chunk, waits until the other upload has started
    writing too: both puts are then inside their temporary files at once."""

    def __init__(self, data: bytes, barrier: threading.Barrier) -> None:
        self.chunks = [data[:10], data[10:]]
        self.barrier = barrier

    def read(self, size: int = -1) -> bytes:
        if len(self.chunks) == 1:
            self.barrier.wait()
        return self.chunks.pop(0) if self.chunks else b""


def test_concurrent_puts_of_one_key_never_collide(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    barrier = threading.Barrier(2)
    bodies = [b"a" * 100, b"b" * 100]
    results: list[object] = [None, None]

    def put(index: int) -> None:
        try:
            results[index] = store.put("packages/x/1", _Rendezvous(bodies[index], barrier), 1000)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=put, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert (tmp_path / "packages/x/1").read_bytes() in bodies
    assert [p.name for p in (tmp_path / "packages/x").iterdir()] == ["1"], "no temporary left"
