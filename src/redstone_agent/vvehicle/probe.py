"""Read a UDS ECU's running version, as a process on a lab node.

The virtual CAN bus (python-can ``udp_multicast``) and the DoIP entity live
on the lab network, so the check runs where the Master runs: ``python -m
redstone_agent.vvehicle.probe ECU_TOML`` prints ``{"version": "..."}``.
It reads the version DID in the default session, exactly what the Master's
flasher reads before and after a flash.
"""

from __future__ import annotations

import json
import sys

from redstone_agent.errors import RedstoneError
from redstone_agent.uds.config import load_ecu
from redstone_agent.uds.link import open_link
from redstone_agent.uds.sequence import read_raw
from redstone_agent.uds.session import Channel


def read_version(path: str) -> str:
    ecu = load_ecu(path)
    channel = Channel(ecu, open_link)
    try:
        raw = channel.call("read version", lambda c: read_raw(c, ecu.dids.version))
    finally:
        channel.drop()
    return raw.rstrip(b"\x00\xff").decode("ascii", "replace")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m redstone_agent.vvehicle.probe ECU_TOML", file=sys.stderr)
        return 2
    try:
        print(json.dumps({"version": read_version(sys.argv[1])}))
    except RedstoneError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
