"""Redstone OTA cloud backend: inventory, packages, Uptane repositories, campaigns, device API."""
