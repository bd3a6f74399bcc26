"""The vehicle board: a Debian (debootstrap) rootfs with systemd and the agent from the wheel.

Layers, each its own cache entry so that a change to the agent does not re-run
debootstrap: ``vbase`` (debootstrap minbase + packages, trimmed), ``vkmods``
(the kernel's modules the rootfs loads), ``wheelhouse`` (dependency wheels),
``vimage`` (the agent installed, units enabled, test console added: one ext4
slot image) and ``vdisk`` (the vehicle layout with that image in slot A).
See tools/qemu/README.md, "The vehicle board".
"""
