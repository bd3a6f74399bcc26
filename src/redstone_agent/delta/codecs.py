"""Payload compression: strong on the generating side, bounded on the applying side.

Decompression never produces more than the exact size the delta announces
and caps the decoder's window/dictionary memory, so a compression bomb in a
hostile delta costs at most a few block sizes of RAM.
"""

from __future__ import annotations

import io
import lzma

import zstandard

from redstone_agent.delta.errors import DeltaFormatError
from redstone_agent.delta.format import Codec

ZSTD_LEVEL = 19
_XZ_PRESET = 9 | lzma.PRESET_EXTREME
_MIN_DICT = 1 << 16
_READ_CHUNK = 1 << 20


def _window_limit(size: int) -> int:
    """The power-of-two window holding ``size`` bytes: make compresses with it, apply allows it."""
    return max(_MIN_DICT, 1 << max(size - 1, 1).bit_length())


def compress(codec: Codec, data: bytes) -> bytes:
    """Compress ``data`` for a payload; the dictionary never exceeds the data's size."""
    if codec is Codec.ZSTD:
        return compress_zstd(data)
    if codec is Codec.XZ:
        dict_size = _window_limit(len(data))
        filters = [{"id": lzma.FILTER_LZMA2, "preset": _XZ_PRESET, "dict_size": dict_size}]
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters)
    return data


def compress_zstd(data: bytes, dictionary: bytes = b"") -> bytes:
    """zstd at level 19; with ``dictionary``, matches may point into it (like --patch-from)."""
    window_log = max(10, (len(dictionary) + len(data) - 1).bit_length())
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL,
        source_size=len(data),
        window_log=window_log if dictionary else 0,
        write_content_size=True,
    )
    prefix = _raw_dictionary(dictionary)
    return zstandard.ZstdCompressor(dict_data=prefix, compression_params=params).compress(data)


def _raw_dictionary(content: bytes) -> zstandard.ZstdCompressionDict | None:
    if not content:
        return None
    return zstandard.ZstdCompressionDict(content, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def smallest(
    data: bytes, codecs: tuple[Codec, ...] = (Codec.ZSTD, Codec.XZ)
) -> tuple[Codec, bytes]:
    """The codec that stores ``data`` in the fewest bytes (NONE if nothing helps)."""
    best: tuple[Codec, bytes] = (Codec.NONE, data)
    for codec in codecs:
        packed = compress(codec, data)
        if len(packed) < len(best[1]):
            best = (codec, packed)
    return best


def decompress(
    codec: Codec, payload: bytes, size: int, where: str, dictionary: bytes = b""
) -> bytes:
    """Decompress ``payload`` to exactly ``size`` bytes, reading no more than ``size + 1``.

    ``dictionary`` (zstd only) is the source data a ZSTD_PATCH payload refers to.
    """
    if codec is Codec.NONE:
        data = payload
    elif codec is Codec.ZSTD:
        data = _zstd_bounded(payload, size, where, dictionary)
    else:
        data = _xz_bounded(payload, size, where)
    if len(data) != size:
        raise DeltaFormatError(f"{where}: payload decompresses to {len(data)}+ bytes, not {size}")
    return data


def _zstd_bounded(payload: bytes, size: int, where: str, dictionary: bytes) -> bytes:
    decompressor = zstandard.ZstdDecompressor(
        dict_data=_raw_dictionary(dictionary),
        max_window_size=_window_limit(size + len(dictionary)),
    )
    out = bytearray()
    try:
        with decompressor.stream_reader(io.BytesIO(payload)) as reader:
            while len(out) <= size:
                chunk = reader.read(min(_READ_CHUNK, size + 1 - len(out)))
                if not chunk:
                    break
                out += chunk
    except zstandard.ZstdError as exc:
        raise DeltaFormatError(f"{where}: corrupt zstd payload ({exc})") from None
    return bytes(out)


def _xz_bounded(payload: bytes, size: int, where: str) -> bytes:
    memlimit = _window_limit(size) + (4 << 20)
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=memlimit)
    try:
        data = decompressor.decompress(payload, max_length=size + 1)
    except lzma.LZMAError as exc:
        raise DeltaFormatError(f"{where}: corrupt xz payload ({exc})") from None
    if len(data) == size and not decompressor.eof:
        raise DeltaFormatError(f"{where}: xz payload does not end where it should")
    return data
