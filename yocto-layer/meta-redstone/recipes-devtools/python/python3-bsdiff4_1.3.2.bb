SUMMARY = "Binary diff and patch using the BSDIFF4 format"
DESCRIPTION = "bsdiff4: the BSDIFF operations of Redstone's block deltas \
               (docs/delta.md); a C extension."
HOMEPAGE = "https://github.com/ilanschnell/bsdiff4"
SECTION = "devel/python"
# The project says "BSD"; its LICENSE is the 2-clause BSD text (with the
# bsdiff original's notice).
LICENSE = "BSD-2-Clause"
LIC_FILES_CHKSUM = "file://LICENSE;md5=a2321ebf3d51a8e3b0010d032d40cd22"

SRC_URI[sha256sum] = "ed262caa697247e9af00af1076b5fce0b578a17b19d9bdbad30c110dd7660a8d"

inherit pypi python_setuptools_build_meta

RDEPENDS:${PN} += "python3-core"
