# nooelint: oelint.file.underscores,oelint.var.mandatoryvar.HOMEPAGE - issue 13 names this file; its version is the Redstone tree's SRCREV; no public homepage yet
SUMMARY = "Redstone A/B boot script for U-Boot and the fw_env.config of its env"
DESCRIPTION = "boot.scr compiled from etc/u-boot/boot.cmd of the Redstone tree \
               (docs/boot.md): it picks slot A or B from the redstone_* env \
               variables and appends redstone.slot= to the kernel command line. \
               Deployed for the two raw copies scriptA/scriptB of \
               wic/redstone-ab.wks (and the boot partition); the package \
               installs /etc/fw_env.config, where redstone-sub finds the env."
SECTION = "bsp"

require recipes-redstone/redstone-ota/redstone-source.inc

DEPENDS += "u-boot-tools-native"
# No compiler: mkimage and install only.
INHIBIT_DEFAULT_DEPS = "1"

# fw_env.config matches wic/redstone-ab.wks. A board with its env elsewhere
# (e.g. at raw eMMC offsets, as in etc/fw_env.config of the Redstone tree)
# puts its own fw_env.config in its BSP layer with FILESEXTRAPATHS:prepend.
SRC_URI += "file://fw_env.config"

inherit deploy kernel-arch

# boot.scr and fw_env.config belong to the board.
PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"

do_compile() {
    uboot-mkimage -A ${UBOOT_ARCH} -T script -C none -n "Redstone A/B" \
        -d ${S}/etc/u-boot/boot.cmd ${B}/boot.scr
}

do_install() {
    install -d ${D}${sysconfdir}
    install -m 0644 ${WORKDIR}/fw_env.config ${D}${sysconfdir}/fw_env.config
}

do_deploy() {
    install -m 0644 ${B}/boot.scr ${DEPLOYDIR}/boot.scr
}
addtask deploy after do_compile before do_build

FILES:${PN} += "${sysconfdir}/fw_env.config"
CONFFILES:${PN} = "${sysconfdir}/fw_env.config"

# The env tools read this file; u-boot's u-boot-env package may ship one too
# (a BSP with its own fw_env.config in u-boot's SRC_URI): install only one.
RRECOMMENDS:${PN} = "libubootenv-bin"
