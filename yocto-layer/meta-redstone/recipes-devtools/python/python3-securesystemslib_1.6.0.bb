SUMMARY = "Cryptographic routines for python-tuf"
DESCRIPTION = "securesystemslib: the key and signature layer under python-tuf; \
               Redstone verifies Uptane metadata with it (cryptography backed)."
HOMEPAGE = "https://github.com/secure-systems-lab/securesystemslib"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=e9703d169911cdb29305f88411c78717"

SRC_URI[sha256sum] = "b16e07c32bb41174c2ee2fb18f478ebe0d52e0e7c1fb085ce89c990452a35977"

# license and license-files in the PEP 639 form, and hatchling==1.32.4 pinned
# as the build requirement: scarthgap's hatchling 1.21.1 builds it once the
# licence fields are in the older form.
inherit pypi python_hatchling redstone_pep639

RDEPENDS:${PN} += "\
    python3-core \
    python3-crypt \
    python3-cryptography \
    python3-datetime \
    python3-json \
    python3-logging \
    python3-netclient \
    python3-shell \
"
