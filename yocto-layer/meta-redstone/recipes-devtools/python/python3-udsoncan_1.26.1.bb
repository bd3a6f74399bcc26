SUMMARY = "Unified Diagnostic Services (ISO 14229) client"
DESCRIPTION = "udsoncan: the UDS client Redstone's Master and Sub flash legacy \
               ECUs with, over DoCAN (can-isotp) or DoIP (doipclient)."
HOMEPAGE = "https://github.com/pylessard/python-udsoncan"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE.txt;md5=4c030137c54ce73fc69b9c990b62b5c1"

SRC_URI[sha256sum] = "e4e04df9ad3be4f1dd6cc6dd580aa8a25cb842b3bb1b10c482d3cffa07303910"

inherit pypi python_setuptools_build_meta

RDEPENDS:${PN} += "\
    python3-core \
    python3-io \
    python3-logging \
    python3-threading \
"
