"""Typed configuration: a TOML file becomes a frozen dataclass, or one clear error.

Each package declares the dataclasses for its own section; this package only
knows how to turn TOML values into them. Errors name the file, the dotted key
and what was expected, because an operator editing ``/etc/redstone/sub.toml``
on a vehicle has nothing else to go on.
"""

from redstone_agent.config.loader import ConfigError, from_dict, load

__all__ = ["ConfigError", "from_dict", "load"]
