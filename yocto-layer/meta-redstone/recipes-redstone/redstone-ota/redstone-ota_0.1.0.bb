# nooelint: oelint.var.mandatoryvar.HOMEPAGE - Redstone has no public homepage yet
# (a file-wide finding: the suppression must be line 1)
SUMMARY = "Redstone OTA: whole-vehicle over-the-air updates"
DESCRIPTION = "The vehicle side of Redstone OTA: the Master OTA daemon (TBox), \
               the Sub OTA daemon (domain controllers, A/B slots), the hardened \
               SOME/IP daemon, redstonectl, the ECU and CAN simulators and the \
               delta and repository tools: one Python distribution, one package \
               per role."
SECTION = "console/network"

require redstone-source.inc

inherit python_setuptools_build_meta redstone-pep639 systemd useradd

# someipy: the SOME/IP binding of the Master and the Sub (someipy is
# GPL-3.0: python3-someipy must be accepted with LICENSE_FLAGS_ACCEPTED, or
# this option dropped and another binding supplied; docs/yocto.md).
# uboot / grub: the bootloader env tool redstone-sub switches slots with.
# REDSTONE_BOOTLOADER: set it in local.conf or the distro conf.
# tlstunnel: redstone-master-tls-tunnel pulls in stunnel (meta-networking) and
# libp11's OpenSSL engine (meta-oe), for a TLS key on a token (docs/keys.md).
REDSTONE_BOOTLOADER ??= "uboot"
PACKAGECONFIG ??= "someipy ${REDSTONE_BOOTLOADER}"
PACKAGECONFIG[someipy] = ",,"
PACKAGECONFIG[tlstunnel] = ",,"
PACKAGECONFIG[uboot] = ",,,,,grub"
PACKAGECONFIG[grub] = ",,,,,uboot"

# One package per role; ${PN} is the library (redstone_agent) they share.
PACKAGES =+ "redstone-master-self-update redstone-master-tls-tunnel redstone-master redstone-sub redstone-someipyd redstone-ctl redstone-ecusim redstone-tools"

do_install:append() {
    # The cloud backend is never installed in a vehicle (DESIGN.md section 2),
    # nor the virtual vehicle that starts it on a workstation.
    rm -rf ${D}${PYTHON_SITEPACKAGES_DIR}/redstone_cloud
    rm -rf ${D}${PYTHON_SITEPACKAGES_DIR}/redstone_agent/vvehicle
    rm -f ${D}${bindir}/redstone-cloud ${D}${bindir}/redstone-vehicle

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/redstone-master.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/redstone-sub.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/redstone-health.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/redstone-sub-commit.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/someipyd.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/redstone-tls-tunnel.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/redstone-tls-tunnel-reload.path ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/redstone-tls-tunnel-reload.service ${D}${systemd_system_unitdir}/
    install -d ${D}${systemd_system_unitdir}/redstone-master.service.d
    install -m 0644 ${S}/systemd/redstone-master.service.d/self-update.conf ${D}${systemd_system_unitdir}/redstone-master.service.d/

    install -d ${D}${datadir}/dbus-1/system.d ${D}${datadir}/dbus-1/system-services
    install -m 0644 ${S}/systemd/org.redstone.Master.conf ${D}${datadir}/dbus-1/system.d/
    install -m 0644 ${S}/systemd/org.redstone.Sub.conf ${D}${datadir}/dbus-1/system.d/
    install -m 0644 ${S}/systemd/system-services/org.redstone.Master.service ${D}${datadir}/dbus-1/system-services/
    install -m 0644 ${S}/systemd/system-services/org.redstone.Sub.service ${D}${datadir}/dbus-1/system-services/

    install -d ${D}${nonarch_libdir}/tmpfiles.d ${D}${nonarch_libdir}/sysusers.d
    install -m 0644 ${S}/systemd/tmpfiles.d/redstone.conf ${D}${nonarch_libdir}/tmpfiles.d/
    install -m 0644 ${S}/systemd/tmpfiles.d/redstone-master.conf ${D}${nonarch_libdir}/tmpfiles.d/
    install -m 0644 ${S}/systemd/sysusers.d/redstone.conf ${D}${nonarch_libdir}/sysusers.d/
    install -m 0644 ${S}/systemd/sysusers.d/redstone-master.conf ${D}${nonarch_libdir}/sysusers.d/

    # Example configs: a product replaces them (bbappend or its own package).
    install -d ${D}${sysconfdir}/redstone/ecus
    install -m 0644 ${S}/etc/redstone/master.toml ${D}${sysconfdir}/redstone/
    install -m 0644 ${S}/etc/redstone/vehicle.dbc ${D}${sysconfdir}/redstone/
    install -m 0644 ${S}/etc/redstone/ecus/bcm.toml ${D}${sysconfdir}/redstone/ecus/
    install -m 0644 ${S}/etc/redstone/ecus/gateway.toml ${D}${sysconfdir}/redstone/ecus/
    install -m 0644 ${S}/etc/redstone/sub.toml ${D}${sysconfdir}/redstone/
    install -m 0644 ${S}/etc/redstone/someipyd.json ${D}${sysconfdir}/redstone/
    install -m 0644 ${S}/etc/redstone/ecus/sim-bcm.toml ${D}${sysconfdir}/redstone/ecus/
    install -m 0644 ${S}/etc/redstone/ecus/sim-gateway.toml ${D}${sysconfdir}/redstone/ecus/
    install -d ${D}${datadir}/redstone/scenarios
    install -m 0644 ${S}/etc/redstone/scenarios/driving-then-parked.toml ${D}${datadir}/redstone/scenarios/
    install -m 0644 ${S}/etc/redstone/scenarios/park-drive-park.toml ${D}${datadir}/redstone/scenarios/

    # The documents the units name (Documentation=file:/usr/share/doc/redstone/...).
    install -d ${D}${docdir}/redstone
    install -m 0644 ${S}/docs/boot.md ${D}${docdir}/redstone/
    install -m 0644 ${S}/docs/dbus.md ${D}${docdir}/redstone/
    install -m 0644 ${S}/docs/keys.md ${D}${docdir}/redstone/
    install -m 0644 ${S}/docs/master.md ${D}${docdir}/redstone/
    install -m 0644 ${S}/docs/someip.md ${D}${docdir}/redstone/
    install -m 0644 ${S}/docs/systemd.md ${D}${docdir}/redstone/
}

FILES:${PN} += "\
    ${nonarch_libdir}/tmpfiles.d/redstone.conf \
    ${nonarch_libdir}/sysusers.d/redstone.conf \
"
# The TBox that updates its own slots and boot script ([master.self], docs/master.md):
# the drop-in opens its block devices and lets it reboot. Other Masters go without it.
FILES:redstone-master-self-update += "${systemd_system_unitdir}/redstone-master.service.d/self-update.conf"
# A TBox whose TLS client key is on a token: the tunnel that holds it (docs/keys.md
# section 8). The unit is a no-op until /etc/redstone/tls-tunnel.conf exists.
FILES:redstone-master-tls-tunnel += "\
    ${systemd_system_unitdir}/redstone-tls-tunnel.service \
    ${systemd_system_unitdir}/redstone-tls-tunnel-reload.path \
    ${systemd_system_unitdir}/redstone-tls-tunnel-reload.service \
"
FILES:redstone-master += "\
    ${bindir}/redstone-master \
    ${systemd_system_unitdir}/redstone-master.service \
    ${datadir}/dbus-1/system.d/org.redstone.Master.conf \
    ${datadir}/dbus-1/system-services/org.redstone.Master.service \
    ${nonarch_libdir}/tmpfiles.d/redstone-master.conf \
    ${nonarch_libdir}/sysusers.d/redstone-master.conf \
    ${sysconfdir}/redstone/master.toml \
    ${sysconfdir}/redstone/vehicle.dbc \
    ${sysconfdir}/redstone/ecus/bcm.toml \
    ${sysconfdir}/redstone/ecus/gateway.toml \
"
FILES:redstone-sub += "\
    ${bindir}/redstone-sub \
    ${systemd_system_unitdir}/redstone-sub.service \
    ${systemd_system_unitdir}/redstone-health.service \
    ${systemd_system_unitdir}/redstone-sub-commit.service \
    ${datadir}/dbus-1/system.d/org.redstone.Sub.conf \
    ${datadir}/dbus-1/system-services/org.redstone.Sub.service \
    ${sysconfdir}/redstone/sub.toml \
"
FILES:redstone-someipyd += "\
    ${bindir}/redstone-someipyd \
    ${systemd_system_unitdir}/someipyd.service \
    ${sysconfdir}/redstone/someipyd.json \
"
FILES:redstone-ctl += "${bindir}/redstonectl"
FILES:redstone-ecusim += "\
    ${bindir}/redstone-ecusim \
    ${bindir}/redstone-cansim \
    ${sysconfdir}/redstone/ecus/sim-bcm.toml \
    ${sysconfdir}/redstone/ecus/sim-gateway.toml \
    ${datadir}/redstone/scenarios \
"
FILES:redstone-tools += "${bindir}/redstone-delta ${bindir}/redstone-repo"

CONFFILES:redstone-master += "\
    ${sysconfdir}/redstone/master.toml \
    ${sysconfdir}/redstone/vehicle.dbc \
    ${sysconfdir}/redstone/ecus/bcm.toml \
    ${sysconfdir}/redstone/ecus/gateway.toml \
"
CONFFILES:redstone-sub += "${sysconfdir}/redstone/sub.toml"
CONFFILES:redstone-someipyd += "${sysconfdir}/redstone/someipyd.json"
CONFFILES:redstone-ecusim += "\
    ${sysconfdir}/redstone/ecus/sim-bcm.toml \
    ${sysconfdir}/redstone/ecus/sim-gateway.toml \
"

# The standard library modules redstone_agent imports, by the package of
# scarthgap's python3-manifest.json that holds each.
REDSTONE_PYTHON_STDLIB = "\
    python3-asyncio python3-compression python3-core python3-crypt \
    python3-datetime python3-fcntl python3-io python3-json python3-logging \
    python3-math python3-mmap python3-multiprocessing python3-netclient \
    python3-numbers python3-threading python3-tomllib \
"
REDSTONE_SOMEIP_RDEPENDS = "${@bb.utils.contains('PACKAGECONFIG', 'someipy', 'redstone-someipyd python3-someipy', '', d)}"
REDSTONE_TUNNEL_RDEPENDS = "${@bb.utils.contains('PACKAGECONFIG', 'tlstunnel', 'libp11 stunnel', '', d)}"
REDSTONE_BOOTENV_RDEPENDS = "\
    ${@bb.utils.contains('PACKAGECONFIG', 'uboot', 'libubootenv-bin', '', d)} \
    ${@bb.utils.contains('PACKAGECONFIG', 'grub', 'grub-editenv', '', d)} \
"

# The core dependencies of pyproject.toml.
RDEPENDS:${PN} = "\
    ${REDSTONE_PYTHON_STDLIB} \
    python3-bsdiff4 \
    python3-cryptography \
    python3-requests \
    python3-securesystemslib \
    python3-tuf \
    python3-zstandard \
"
# Extras master, uds, vehicle, dbus and someip. doipclient, cantools and
# dbus-fast are imported only when a DoIP ECU, [master.vehicle] or D-Bus is
# configured: hard dependencies all the same, so that a config change never
# needs a new image.
RDEPENDS:redstone-master = "\
    ${PN} \
    ${REDSTONE_SOMEIP_RDEPENDS} \
    dbus \
    python3-aiohttp \
    python3-can \
    python3-can-isotp \
    python3-cantools \
    python3-dbus-fast \
    python3-doipclient \
    python3-udsoncan \
"
# The Sub imports the UDS stack at start (ECUs behind it, docs/someip.md
# section 11) and switches slots with the bootloader's own env tool.
RDEPENDS:redstone-sub = "\
    ${PN} \
    ${REDSTONE_BOOTENV_RDEPENDS} \
    ${REDSTONE_SOMEIP_RDEPENDS} \
    dbus \
    python3-can \
    python3-can-isotp \
    python3-dbus-fast \
    python3-doipclient \
    python3-udsoncan \
"
RDEPENDS:redstone-someipyd = "${PN} ${@bb.utils.contains('PACKAGECONFIG', 'someipy', 'python3-someipy', '', d)}"
RDEPENDS:redstone-ctl = "${PN} python3-dbus-fast python3-rich"
# udp_multicast (python-can's msgpack) carries CAN between bench namespaces.
RDEPENDS:redstone-ecusim = "\
    ${PN} \
    python3-can \
    python3-can-isotp \
    python3-cantools \
    python3-doipclient \
    python3-msgpack \
    python3-udsoncan \
"
RDEPENDS:redstone-tools = "${PN}"
RDEPENDS:redstone-master-self-update = "${PN} redstone-master"
RDEPENDS:redstone-master-tls-tunnel = "${PN} ${REDSTONE_TUNNEL_RDEPENDS} redstone-master"

# [slots.bootloader.uboot] defaults: the board's default env, to repair a
# corrupt one (u-boot's u-boot-env package, /etc/u-boot-initial-env).
RRECOMMENDS:redstone-sub = "${@bb.utils.contains('PACKAGECONFIG', 'uboot', 'u-boot-default-env', '', d)}"
# redstone-delta make finds matching source regions with numpy; it also needs
# detools (no meta-python recipe): deltas are made on build hosts and in the cloud,
# a target only runs redstone-delta apply and info.
RRECOMMENDS:redstone-tools = "python3-numpy"

SYSTEMD_PACKAGES = "redstone-master redstone-master-tls-tunnel redstone-sub redstone-someipyd"
SYSTEMD_SERVICE:redstone-master = "redstone-master.service"
SYSTEMD_SERVICE:redstone-master-tls-tunnel = "redstone-tls-tunnel.service redstone-tls-tunnel-reload.path"
SYSTEMD_SERVICE:redstone-sub = "redstone-sub.service redstone-health.service redstone-sub-commit.service"
SYSTEMD_SERVICE:redstone-someipyd = "someipyd.service"
SYSTEMD_AUTO_ENABLE = "enable"

# The users and groups of systemd/sysusers.d, created at rootfs time (a
# read-only rootfs cannot run systemd-sysusers at boot; scarthgap's
# systemd_sysusers_check compares both). Every package creates the groups
# its own files name.
USERADD_PACKAGES = "${PN} redstone-master redstone-someipyd"
GROUPADD_PARAM:${PN} = "--system redstone; --system redstone-someip"
GROUPADD_PARAM:redstone-master = "--system redstone-someip"
USERADD_PARAM:redstone-master = "\
    --system --no-create-home --home-dir ${localstatedir}/lib/redstone/master \
    --shell ${base_sbindir}/nologin --comment 'Redstone Master OTA daemon' \
    --user-group --groups redstone-someip redstone-master \
"
GROUPADD_PARAM:redstone-someipyd = "--system redstone-someip"
