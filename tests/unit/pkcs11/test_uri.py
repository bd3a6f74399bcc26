"""RFC 7512 URIs: the key they name, and one line for each way they go wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from redstone_agent.pkcs11.uri import UriError, parse


def test_a_full_uri_names_token_key_module_and_pin_file() -> None:
    uri = parse(
        "pkcs11:token=OEM%20CA;object=oem-root;id=%01%a2;serial=5faca97c;type=private"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:///etc/redstone/ca.pin"
    )
    assert (uri.token, uri.object, uri.id, uri.serial) == (
        "OEM CA",
        "oem-root",
        b"\x01\xa2",
        "5faca97c",
    )
    assert uri.module_path == Path("/usr/lib/softhsm/libsofthsm2.so")
    assert uri.pin_source == Path("/etc/redstone/ca.pin")
    assert str(uri) == "pkcs11:token=OEM%20CA;object=oem-root;id=%01%a2;serial=5faca97c"


def test_the_shortest_uri_leaves_module_and_pin_to_the_environment() -> None:
    uri = parse("pkcs11:token=t;object=k")
    assert uri.module_path is None and uri.pin_source is None and uri.id is None
    assert parse("pkcs11:object=k;token=t?pin-source=/run/pin").pin_source == Path("/run/pin")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("token=t;object=k", "must start with 'pkcs11:'"),
        ("pkcs11:object=k", "no 'token=' attribute"),
        ("pkcs11:token=t", "no 'object=' attribute"),
        ("pkcs11:token=t;object=k;type=cert", "a signing key is type=private"),
        ("pkcs11:token=t;object=k;slot=3", "unknown path attribute 'slot'"),
        ("pkcs11:token=t;object=k?modulepath=/x.so", "unknown query attribute 'modulepath'"),
        ("pkcs11:token=t;token=u;object=k", "'token' given twice"),
        ("pkcs11:token=t;object", "'object' is not name=value"),
        ("pkcs11:token=t;object=k?pin-source=relative/pin", "absolute file path"),
    ],
)
def test_a_bad_uri_is_one_line_naming_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(UriError, match=says) as caught:
        parse(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ["pkcs11:token=t;object=k?pin-value=1234", "pkcs11:token=t;object=k;pin-value=1234"],
)
def test_a_pin_in_the_uri_is_refused_and_never_repeated(text: str) -> None:
    with pytest.raises(UriError, match="pin-value in a PKCS#11 URI is refused") as caught:
        parse(text)
    assert "1234" not in str(caught.value)
