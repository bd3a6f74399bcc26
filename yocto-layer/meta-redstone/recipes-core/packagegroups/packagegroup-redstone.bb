SUMMARY = "Redstone OTA package groups: one per kind of node"
DESCRIPTION = "packagegroup-redstone-tbox: the Master OTA (TBox) and redstonectl; \
               packagegroup-redstone-domain-controller: the Sub OTA and the \
               bootloader env tool; packagegroup-redstone-bench: the ECU and \
               CAN simulators and the delta and repository tools, for test \
               benches (never a vehicle)."
SECTION = "base"
LICENSE = "MIT"

inherit packagegroup

PACKAGES = "\
    ${PN}-bench \
    ${PN}-domain-controller \
    ${PN}-tbox \
"

# redstone-someipyd and python3-someipy come with the daemons when
# PACKAGECONFIG:pn-redstone-ota has "someipy" (the default); the bootloader
# env tool with redstone-sub (REDSTONE_BOOTLOADER).
RDEPENDS:${PN}-tbox = "\
    redstone-ctl \
    redstone-master \
"
RDEPENDS:${PN}-domain-controller = "\
    redstone-sub \
"
RDEPENDS:${PN}-bench = "\
    redstone-ecusim \
    redstone-tools \
"
