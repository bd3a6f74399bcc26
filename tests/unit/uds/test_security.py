"""Seed→key plug-ins: built-ins give known keys, bad plug-ins give clear errors."""

from __future__ import annotations

import pytest

from redstone_agent.uds.errors import SecurityAccessError
from redstone_agent.uds.security import compute_key

PLUGIN = "tests.unit.uds.plugin_example"


def test_xor_repeats_the_mask_over_the_seed() -> None:
    key = compute_key("xor", 1, bytes.fromhex("0011223344"), {"mask": "ff00"})
    assert key == bytes.fromhex("ff11dd33bb")


def test_aes_cmac_matches_rfc4493_style_computation() -> None:
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    secret = bytes(range(16))
    mac = cmac.CMAC(algorithms.AES(secret))
    mac.update(b"\x01" + b"\xaa\xbb\xcc\xdd")
    expected = mac.finalize()[:4]
    assert compute_key("aes-cmac", 1, b"\xaa\xbb\xcc\xdd", {"secret": secret.hex()}) == expected


def test_third_party_plugin_by_module_and_function() -> None:
    assert compute_key(f"{PLUGIN}:reverse_key", 3, b"\x01\x02", {}) == b"\x02\x01\x03"


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("rot13", {}, "unknown security algorithm 'rot13'"),
        ("xor", {}, "needs params.mask"),
        ("xor", {"mask": "zz"}, "params.mask is not hex"),
        ("aes-cmac", {"secret": "0011"}, "128/192/256-bit"),
        ("no.such.module:f", {}, "cannot load security algorithm"),
        (f"{PLUGIN}:missing", {}, "cannot load security algorithm"),
        (f"{PLUGIN}:NOT_CALLABLE", {}, "is not callable"),
        (f"{PLUGIN}:broken_key", {}, "failed: supplier bug"),
    ],
)
def test_bad_algorithms_are_one_line_errors(
    name: str, params: dict[str, str], message: str
) -> None:
    with pytest.raises(SecurityAccessError, match=message):
        compute_key(name, 1, b"\x01\x02\x03\x04", params)
