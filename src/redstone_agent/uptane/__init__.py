"""Uptane trust on python-tuf: repositories, verification, bundles, manifests, keys.

See docs/uptane.md for the formats and the public API.
"""
