"""Block-based delta images: make on a build host, apply while streaming on the vehicle.

Applying needs only the standard library, bsdiff4 and zstandard; making
also needs numpy (the ``delta`` extra). The format is in docs/delta.md.
"""

from redstone_agent.delta.apply import (
    ApplyReport,
    DeltaSink,
    apply_delta,
    check_source,
    check_target_size,
    sha256_of,
    verify_delta,
)
from redstone_agent.delta.errors import (
    DeltaError,
    DeltaFormatError,
    DeltaTruncatedError,
    DeltaVerificationError,
    SourceMismatchError,
    TargetTooLargeError,
)
from redstone_agent.delta.format import DEFAULT_BLOCK_SIZE, HEADER_SIZE, DeltaHeader, OpKind
from redstone_agent.delta.reader import read_header

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "HEADER_SIZE",
    "ApplyReport",
    "DeltaError",
    "DeltaFormatError",
    "DeltaHeader",
    "DeltaSink",
    "DeltaTruncatedError",
    "DeltaVerificationError",
    "OpKind",
    "SourceMismatchError",
    "TargetTooLargeError",
    "apply_delta",
    "check_source",
    "check_target_size",
    "read_header",
    "sha256_of",
    "verify_delta",
]
