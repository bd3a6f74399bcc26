"""A UDS ECU simulator that behaves like a real bootloader (ISO-TP and DoIP).

:class:`~redstone_agent.ecusim.ecu.SimulatedEcu` is the I/O-free UDS server;
``isotp_server`` and ``doip_server`` put it on a CAN bus or a TCP/UDP socket;
``runner`` starts both from a :class:`~redstone_agent.ecusim.config.SimConfig`.
"""
