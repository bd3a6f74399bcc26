SUMMARY = "A Python package implementing the SOME/IP protocol"
DESCRIPTION = "someipy: SOME/IP and SOME/IP-SD for asyncio, through a someipyd \
               daemon per node. Redstone's Master and Sub speak SOME/IP with \
               it (redstone-someipyd is its daemon, hardened)."
HOMEPAGE = "https://github.com/chrizog/someipy"
SECTION = "devel/python"
# GPL-3.0: a product that ships this package ships the Master and the Sub as a
# GPL-3.0 combined work (LICENSE of Redstone, docs/someip.md section 10). It is
# built only when the product says so in local.conf or its distro:
#   LICENSE_FLAGS_ACCEPTED += "gpl3_python3-someipy"
# or drops "someipy" from PACKAGECONFIG:pn-redstone-ota and supplies another
# SOME/IP binding behind redstone_agent.someip.binding.Stack (docs/yocto.md).
LICENSE = "GPL-3.0-only"
LICENSE_FLAGS = "gpl3"
LIC_FILES_CHKSUM = "file://LICENSE.md;md5=1ebbd3e34237af26da5dc08a4e440464"

SRC_URI[sha256sum] = "e98ba715e4b7198a574499cf45860f2d5e83a4f999af7dea4a91e9a306709b52"

inherit pypi python_setuptools_build_meta

# Redstone patches someipy's private daemon and endpoint classes at run time
# (docs/someip.md section 10): they are pinned to this version's layout.
RDEPENDS:${PN} += "\
    python3-asyncio \
    python3-core \
    python3-io \
    python3-json \
    python3-logging \
    python3-netclient \
"
