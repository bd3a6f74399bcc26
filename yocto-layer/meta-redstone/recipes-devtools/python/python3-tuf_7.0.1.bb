SUMMARY = "A secure updater framework for Python (python-tuf)"
DESCRIPTION = "python-tuf: TUF metadata and the ngclient; Redstone's Uptane \
               verification (Master and Sub) is built on it."
HOMEPAGE = "https://github.com/theupdateframework/python-tuf"
SECTION = "devel/python"
LICENSE = "Apache-2.0 | MIT"
LIC_FILES_CHKSUM = "\
    file://LICENSE;md5=8cc789b082b3d97e1ccc5261f8594d3f \
    file://LICENSE-MIT;md5=0905c600830081fce64622608c4a2628 \
"

SRC_URI[sha256sum] = "5ada1db78da3518fa851e28588f4b2249b8662a28ae528f54afa2a1de541fb31"

# license and license-files in the PEP 639 form, and hatchling==1.32.0 pinned
# as the build requirement (see redstone_pep639.bbclass).
inherit pypi python_hatchling redstone_pep639

RDEPENDS:${PN} += "\
    python3-core \
    python3-crypt \
    python3-datetime \
    python3-io \
    python3-json \
    python3-logging \
    python3-netclient \
    python3-securesystemslib \
    python3-urllib3 \
"
