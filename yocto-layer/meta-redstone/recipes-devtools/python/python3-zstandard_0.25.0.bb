SUMMARY = "Zstandard bindings for Python"
DESCRIPTION = "zstandard: zstd-compressed images and delta blocks in Redstone. \
               Built with its C backend and the zstd it bundles; its CFFI \
               backend is left out (no python3-cffi-native here)."
HOMEPAGE = "https://github.com/indygreg/python-zstandard"
SECTION = "devel/python"
LICENSE = "BSD-3-Clause"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3ae87c50fd64b6f0942823686871e758"

SRC_URI[sha256sum] = "7713e1179d162cf5c7906da876ec2ccb9c3a9dcbdffef0cc7f70c3667a205f0b"

# license = "BSD-3-Clause" (PEP 639) and setuptools >= 77 in pyproject.toml.
inherit pypi python_setuptools_build_meta redstone_pep639

# setup.py compares versions with packaging.
DEPENDS += "python3-packaging-native"

RDEPENDS:${PN} += "python3-core"
