"""bsdiff's streams for one block, on build hosts: detools' C matcher over a divsufsort array.

bsdiff4's own diff sorts the source suffixes with qsufsort, which took about three
quarters of ``redstone-delta make``'s time on a rootfs image; divsufsort builds the
same suffix array about ten times faster, and detools runs bsdiff's matching loop on
it in C. The control, diff and extra streams are bsdiff's (diff bytes are new minus
old), so the payload and the vehicle's apply are unchanged (docs/delta.md §1.3).
"""

from __future__ import annotations

from detools import bsdiff as detools_bsdiff
from detools import suffix_array
from detools.common import unpack_size_bytes

from redstone_agent.delta.bsdiff_payload import BsdiffPayload, control_record, pack_payload

_CHUNK_FIELDS = 5
"""detools' chunks come in fives: diff length, diff, extra length, extra, seek."""


def bsdiff_streams(old: bytes, new: bytes) -> tuple[bytes, bytes, bytes]:
    """bsdiff's control records, diff stream and extra stream turning ``old`` into ``new``."""
    suffixes = bytearray(4 * (len(old) + 1))
    suffix_array.divsufsort(old, suffixes)
    chunks = detools_bsdiff.create_patch(suffixes, old, new, bytearray(len(new) + 1))
    control = bytearray()
    diffs: list[bytes] = []
    extras: list[bytes] = []
    for at in range(0, len(chunks), _CHUNK_FIELDS):
        diff_length, diff, extra_length, extra, seek = chunks[at : at + _CHUNK_FIELDS]
        control += control_record(
            unpack_size_bytes(diff_length), unpack_size_bytes(extra_length), unpack_size_bytes(seek)
        )
        diffs.append(diff)
        extras.append(extra)
    return bytes(control), b"".join(diffs), b"".join(extras)


def make_payload(old: bytes, new: bytes) -> BsdiffPayload:
    """Diff ``new`` against ``old`` and pack the result as small as the codecs allow."""
    return pack_payload(*bsdiff_streams(old, new))
