"""Fuzz the offline bundle reader (uptane/offline.py): an OfflineBundleError or a bundle.

Properties: any bytes, and any damage to a well-formed bundle (flipped bytes,
cut, extended), open as a bundle or fail with one line; once open, reading any
member and copying any target ends in bytes or one line, never another
exception; a member's announced size never becomes an allocation.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from redstone_agent.uptane.errors import OfflineBundleError
from redstone_agent.uptane.offline import (
    MANIFEST,
    BundleManifest,
    OfflineBundle,
    tar_stream,
    target_member,
)
from redstone_agent.uptane.verifier import VerifiedTarget
from tests.fuzz.profile import fuzz, one_line, peak_memory_below

IMAGE = b"firmware " * 40
SHA = hashlib.sha256(IMAGE).hexdigest()


def _good() -> bytes:
    members = {
        MANIFEST: BundleManifest("RSTEST00000000001", "spring").to_bytes(),
        "director/timestamp.json": b'{"signed": {}}',
        target_member(SHA): IMAGE,
    }
    items = [(n, len(d), lambda d=d: [d]) for n, d in members.items()]
    return b"".join(tar_stream(items, 0))


GOOD = _good()


def exercise(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.tar"
        path.write_bytes(data)
        try:
            bundle = OfflineBundle.open(path)
        except OfflineBundleError as exc:
            one_line(exc)
            return
        for name in bundle.names():
            bundle.metadata(name)
        target = VerifiedTarget("ECU-1", "fw", len(IMAGE), SHA, "hw", 1)
        try:
            copied = bundle.copy_target(target, Path(tmp) / "fw")
        except OfflineBundleError as exc:
            one_line(exc)
        else:
            assert copied.read_bytes() == IMAGE


@fuzz(200)
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\0" * 1024)
def test_any_bytes_open_or_are_one_line(data: bytes) -> None:
    exercise(data)


@fuzz(300)
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), max_size=8),
    st.integers(0, len(GOOD)),
    st.binary(max_size=64),
)
def test_a_damaged_bundle_opens_or_is_one_line(
    flips: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    data = bytearray(GOOD)
    for offset, mask in flips:
        data[offset] ^= mask
    exercise(bytes(data[:cut]) + tail)


@fuzz(20)
@given(st.integers(1 << 30, 1 << 62))
def test_a_huge_announced_size_allocates_nothing(size: int) -> None:
    header = bytearray(GOOD[:512])
    header[124:136] = b"%011o\0" % min(size, 0o77777777777)
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    with peak_memory_below(4 << 20):
        exercise(bytes(header) + GOOD[512:])
