SUMMARY = "Controller Area Network (CAN) interface module for Python"
DESCRIPTION = "python-can 4.6.1, the version Redstone is tested with: it \
               replaces meta-python's 4.2.2 (this layer's priority is higher) \
               because Redstone's pyproject.toml asks for 4.4 or newer."
HOMEPAGE = "https://github.com/hardbyte/python-can"
SECTION = "devel/python"
LICENSE = "LGPL-3.0-only"
LIC_FILES_CHKSUM = "file://LICENSE.txt;md5=e6a600fd5e1d9cbde2d983680233ad02"

SRC_URI[sha256sum] = "290fea135d04b8504ebff33889cc6d301e2181a54099116609f940825ffe5005"

PYPI_PACKAGE = "python_can"

# license = "LGPL-3.0-only" (PEP 639), setuptools >= 77 and setuptools_scm in
# pyproject.toml; the version comes from the sdist's PKG-INFO.
inherit pypi python_setuptools_build_meta redstone_pep639

DEPENDS += "python3-setuptools-scm-native"

RDEPENDS:${PN} += "\
    python3-asyncio \
    python3-compression \
    python3-core \
    python3-crypt \
    python3-ctypes \
    python3-datetime \
    python3-fcntl \
    python3-io \
    python3-json \
    python3-logging \
    python3-netclient \
    python3-numbers \
    python3-packaging \
    python3-sqlite3 \
    python3-threading \
    python3-typing-extensions \
    python3-wrapt \
"
