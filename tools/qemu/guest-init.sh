#!/bin/sh
# /init of the system-test guest (busybox): the agent's trial-boot duty in shell.
#
# Reads the slot U-Boot chose from /proc/cmdline (redstone.slot=, root=),
# mounts that slot's rootfs, runs the slot's own health check
# (/usr/lib/redstone/health-check), and then, like `redstone-sub mark-good`,
# commits an uncommitted slot with fw_setenv (BootState.commit: <S>_ok=1,
# <S>_tries=0, order = S first) and powers off. A failed health check reboots
# without committing, so U-Boot spends the slot's tries. Every line meant for
# the host starts with "REDSTONE:" (tools/qemu/console.py parses them).
#
# A slot whose rootfs carries systemd (the vehicle board, tools/qemu/vehicle)
# is a real system: the init hands over to it read-only (switch_root) and the
# slot's own units do the health check and the commit.
PATH=/bin:/sbin:/usr/bin
export PATH
ENV_CONFIG=/etc/fw_env.config

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

say() { echo "REDSTONE: $*"; }
power_off() { sync; say "power-off"; poweroff -f; sleep 5; echo o >/proc/sysrq-trigger; }
show_env() {
    grep -E '^redstone_(order|[AB]_ok|[AB]_tries)=' /tmp/env.txt | sort | sed "s/^/REDSTONE: env-$1 /"
}
reboot_now() { sync; say "reboot $*"; echo b >/proc/sysrq-trigger; sleep 5; }

while read -r module; do
    insmod "/lib/modules/$module" || say "insmod-failed $module"
done </lib/modules/load-order

slot=
root=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        redstone.slot=*) slot="${arg#*=}" ;;
        root=*) root="${arg#*=}" ;;
    esac
done
say "cmdline $(cat /proc/cmdline)"
say "booted slot=$slot root=$root"
case "$slot" in
    A) other=B ;;
    B) other=A ;;
    *) say "error no redstone.slot on the command line"; reboot_now "no-slot" ;;
esac

waited=0
while [ ! -b "$root" ] || [ ! -b /dev/vda4 ]; do
    [ "$waited" -ge 100 ] && break
    sleep 0.1
    waited=$((waited + 1))
done
env_readable=0
if fw_printenv -c "$ENV_CONFIG" >/tmp/env.txt 2>/dev/null; then
    env_readable=1
    show_env before
else
    say "env-unreadable"
fi

healthy=0
mkdir -p /rootfs
if mount -t ext4 -o ro "$root" /rootfs; then
    say "rootfs $(cat /rootfs/etc/redstone-release)"
    if [ -x /rootfs/lib/systemd/systemd ]; then
        say "switch-root systemd"
        mount -o move /dev /rootfs/dev
        umount /sys /proc
        exec switch_root /rootfs /lib/systemd/systemd
    fi
    if sh /rootfs/usr/lib/redstone/health-check; then
        healthy=1
    fi
    umount /rootfs
else
    say "error cannot mount $root"
fi

if [ "$healthy" != 1 ]; then
    say "health=fail"
    reboot_now "uncommitted"
fi
say "health=ok"
committed="$(sed -n "s/^redstone_${slot}_ok=//p" /tmp/env.txt)"
if [ "$env_readable" != 1 ]; then
    # Like the agent: never write over an env it cannot read (init-bootenv's job).
    say "not committing: env unreadable"
elif [ "$committed" = 1 ]; then
    say "already-committed $slot"
else
    printf 'redstone_%s_ok=1\nredstone_%s_tries=0\nredstone_order=%s %s\n' \
        "$slot" "$slot" "$slot" "$other" >/tmp/commit.env
    if fw_setenv -c "$ENV_CONFIG" -s /tmp/commit.env; then
        say "committed $slot"
    else
        say "error commit failed"
    fi
fi
if fw_printenv -c "$ENV_CONFIG" >/tmp/env.txt 2>/dev/null; then
    show_env after
fi
power_off
