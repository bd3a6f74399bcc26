"""QEMU harness for the system tests: a real U-Boot choosing A/B slots.

Builds (and caches under ``~/.cache/redstone-system``) a Debian kernel, a
busybox initramfs whose init plays the agent's health check, and a GPT disk
whose boot partition carries ``boot.scr``; then boots it under QEMU (TCG)
with the serial console captured to a file. See tools/qemu/README.md.
"""
