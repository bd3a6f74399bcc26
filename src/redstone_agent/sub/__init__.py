"""The Sub OTA daemon: offers the update service to the Master over SOME/IP.

``engine`` is the journaled state machine (install, activate, commit, roll
back, recover after power loss); ``service`` maps SOME/IP methods onto it;
``trust`` does the Sub's own Uptane verification; ``daemon`` wires them to
someipyd, systemd (``sdnotify``) and D-Bus (``dbus_api``).
"""
