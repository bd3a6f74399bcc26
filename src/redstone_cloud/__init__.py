"""Redstone OTA cloud backend: inventory, packages, Uptane repositories, campaigns."""

__version__ = "0.1.0"
