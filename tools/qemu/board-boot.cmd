# boot.scr of the QEMU x86 test board: the fixed first stage (docs/boot.md,
# "Boot script and bootloader update"). It is never updated over the air.
#
# 1. Emulate "environment on storage": Debian's qemu-x86 U-Boot keeps its env
#    nowhere, so import the env block from partition 4 (CRC checked), or the
#    board defaults when the block is blank or corrupt.
# 2. Run the product's A/B script (etc/u-boot/boot.cmd, mkimage-compiled) from
#    one of its two raw copies: p5 scriptA (LBA 0x15000) or p6 scriptB (LBA
#    0x15400), 0x400 sectors each. ${redstone_script} names the copy (unset or
#    anything but B: A). A copy whose image fails iminfo (magic, header CRC,
#    data CRC: a write torn by a power cut) is skipped for the other one.
#    iminfo only checks, it runs nothing: a script that fails while running is
#    never run a second time from the other copy.
# Constants: tools/qemu/layout.py (tests/system/test_board_files.py keeps them in
# step). Locals are redstone_-prefixed and assigned non-empty values (hush looks
# names up in the env first; docs/boot.md, "Variables").
if virtio read 0x6000000 0x14800 0x20 && env import -c 0x6000000 0x4000; then
    echo "board: environment loaded from virtio 0:4"
else
    echo "board: no valid environment on virtio 0:4, using board defaults"
    load virtio 0:1 0x6000000 qemu-x86.env
    env import -t 0x6000000 ${filesize}
fi

redstone_copy=A
redstone_other=B
if test "${redstone_script}" = "B"; then
    redstone_copy=B
    redstone_other=A
fi
redstone_run=none
for redstone_c in ${redstone_copy} ${redstone_other}; do
    if test "${redstone_run}" = "none"; then
        redstone_valid=0
        if test "${redstone_c}" = "A"; then
            if virtio read 0x6100000 0x15000 0x400 && iminfo 0x6100000; then redstone_valid=1; fi
        else
            if virtio read 0x6100000 0x15400 0x400 && iminfo 0x6100000; then redstone_valid=1; fi
        fi
        if test "${redstone_valid}" = "1"; then
            redstone_run="${redstone_c}"
        else
            echo "board: boot script copy ${redstone_c} is invalid"
        fi
    fi
done
if test "${redstone_run}" = "none"; then
    echo "board: no valid boot script copy on virtio 0:5 or 0:6"
else
    if test "${redstone_run}" = "${redstone_copy}"; then
        echo "board: running boot script copy ${redstone_run} (selected)"
    else
        echo "board: running boot script copy ${redstone_run} (fallback, ${redstone_copy} selected)"
    fi
    source 0x6100000
fi
