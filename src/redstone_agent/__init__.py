"""Redstone OTA vehicle agent: the Master (TBox) and Sub (domain controller) daemons and
the libraries they compose (slots, delta, uptane, uds, someip)."""

__version__ = "0.1.0"
