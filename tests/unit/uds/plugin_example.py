"""A third-party seed→key algorithm, loaded by name in the plug-in tests."""

from collections.abc import Mapping


def reverse_key(level: int, seed: bytes, params: Mapping[str, str]) -> bytes:
    return bytes(reversed(seed)) + bytes([level])


def broken_key(level: int, seed: bytes, params: Mapping[str, str]) -> bytes:
    raise ZeroDivisionError("supplier bug")


NOT_CALLABLE = 42
