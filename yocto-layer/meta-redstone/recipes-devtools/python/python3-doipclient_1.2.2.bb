SUMMARY = "Diagnostics over IP (ISO 13400-2) client"
DESCRIPTION = "doipclient: the DoIP transport Redstone flashes Ethernet ECUs \
               with, through udsoncan's DoIPClientUDSConnector."
HOMEPAGE = "https://github.com/jacobschaer/python-doipclient"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=dabfe4532e8b6ae0f6a35997904e96e5"

SRC_URI[sha256sum] = "d591816ed38e66ecf348fd9fd99e1cc44fe57e14ed6fa3a1371c85996d98f4e9"

inherit pypi python_setuptools_build_meta

RDEPENDS:${PN} += "\
    python3-core \
    python3-io \
    python3-logging \
"
