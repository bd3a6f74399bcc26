SUMMARY = "ISO 15765-2 (ISO-TP) transport in Python"
DESCRIPTION = "can-isotp: the ISO-TP layer of Redstone's DoCAN transport, over \
               python-can. Not the can-isotp kernel module recipe of meta-oe."
HOMEPAGE = "https://github.com/pylessard/python-can-isotp"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE.txt;md5=4c030137c54ce73fc69b9c990b62b5c1"

SRC_URI[sha256sum] = "4586ca62f8646da918df1d3ffd257c7e3532a4fbd138cebd8fe0777e3b94e361"

PYPI_PACKAGE = "can_isotp"

inherit pypi python_setuptools_build_meta

RDEPENDS:${PN} += "\
    python3-core \
    python3-io \
    python3-logging \
    python3-threading \
"
