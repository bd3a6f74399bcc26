# boot.scr of the QEMU x86 test board: emulates "environment on storage".
#
# Debian's qemu-x86 U-Boot keeps its env nowhere, so this board script does
# what U-Boot does at start-up on a board with a stored env: import the env
# block from partition 4 (CRC checked), or the board defaults when the block is
# blank or corrupt. Then it runs the product's A/B script (etc/u-boot/boot.cmd,
# compiled as redstone.scr) unchanged. Constants: tools/qemu/layout.py.
if virtio read 0x6000000 0x14800 0x20 && env import -c 0x6000000 0x4000; then
    echo "board: environment loaded from virtio 0:4"
else
    echo "board: no valid environment on virtio 0:4, using board defaults"
    load virtio 0:1 0x6000000 qemu-x86.env
    env import -t 0x6000000 ${filesize}
fi
load virtio 0:1 0x6100000 redstone.scr
source 0x6100000
