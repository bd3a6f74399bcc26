"""The fast canonical encoder must be byte-identical to python-tuf's, or signatures break."""

from __future__ import annotations

from typing import Any

import pytest
from tuf.api.serialization.json import CanonicalJSONSerializer

from redstone_agent.uptane.trusted import canonical_bytes
from redstone_agent.uptane.tufapi import TargetFile, Targets

TRICKY: list[Any] = [
    "plain",
    "ünïcødé ✓ 漢字",
    'quote " inside',
    "back\\slash",
    "new\nline\ttab\x01ctl",
    "",
    "\u2028 line separator",
    ["nested", {"b": 1, "a": [True, False, None]}],
    {"z": 0, "A": -(2**63), "é": 2**70},
]


@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
def test_canonical_bytes_equal_python_tuf(value: Any) -> None:
    target = TargetFile(
        1, {"sha256": "ab" * 32}, f"dir/{len(str(value))}.bin", {"custom": {"v": value}}
    )
    signed = Targets(version=3, targets={target.path: target})
    assert canonical_bytes(signed) == CanonicalJSONSerializer().serialize(signed)
