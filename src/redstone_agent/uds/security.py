"""SecurityAccess seed→key algorithms as plug-ins.

ECU suppliers keep their algorithms secret; an OEM integrates one by naming a
``package.module:function`` with the signature of :data:`KeyAlgorithm`. Two
built-ins cover simulators and labs. The ECU simulator uses the same registry,
so a tester and a simulated ECU agree by configuration alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from redstone_agent.uds.errors import SecurityAccessError

KeyAlgorithm = Callable[[int, bytes, Mapping[str, str]], bytes]
"""``(level, seed, params) -> key``; ``params`` are the strings of the ECU config."""


def _hex_param(params: Mapping[str, str], name: str, algorithm: str) -> bytes:
    try:
        return bytes.fromhex(params[name])
    except KeyError:
        raise SecurityAccessError(f"security algorithm {algorithm} needs params.{name}") from None
    except ValueError:
        raise SecurityAccessError(f"security params.{name} is not hex") from None


def xor_key(level: int, seed: bytes, params: Mapping[str, str]) -> bytes:
    """Key = seed XOR a repeated mask: a lab algorithm, no secrecy to speak of."""
    mask = _hex_param(params, "mask", "xor")
    if not mask:
        raise SecurityAccessError("security params.mask is empty")
    return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(seed))


def aes_cmac_key(level: int, seed: bytes, params: Mapping[str, str]) -> bytes:
    """Key = AES-CMAC(secret, level || seed), truncated to the seed length."""
    secret = _hex_param(params, "secret", "aes-cmac")
    if len(secret) not in (16, 24, 32):
        raise SecurityAccessError("security params.secret must be a 128/192/256-bit AES key")
    mac = cmac.CMAC(algorithms.AES(secret))
    mac.update(bytes([level]) + seed)
    return mac.finalize()[: max(len(seed), 4)]


BUILTIN: dict[str, KeyAlgorithm] = {"xor": xor_key, "aes-cmac": aes_cmac_key}


def resolve(name: str) -> KeyAlgorithm:
    """The algorithm named ``name``: a built-in or ``package.module:function``."""
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, sep, attr = name.partition(":")
    if not sep:
        known = ", ".join(sorted(BUILTIN))
        raise SecurityAccessError(
            f"unknown security algorithm {name!r} (built-in: {known}; or package.module:function)"
        )
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SecurityAccessError(f"cannot load security algorithm {name!r}: {exc}") from None
    if not callable(function):
        raise SecurityAccessError(f"security algorithm {name!r} is not callable")
    return function  # type: ignore[no-any-return]


def compute_key(name: str, level: int, seed: bytes, params: Mapping[str, str]) -> bytes:
    """Run the named algorithm; plug-in failures become one clear error."""
    try:
        key = resolve(name)(level, seed, params)
    except SecurityAccessError:
        raise
    except Exception as exc:
        raise SecurityAccessError(f"security algorithm {name!r} failed: {exc}") from exc
    if not isinstance(key, bytes | bytearray) or not key:
        raise SecurityAccessError(f"security algorithm {name!r} returned no key bytes")
    return bytes(key)
