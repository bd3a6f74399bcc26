#!/usr/bin/env bash
# The README's main job: sets up what it needs, then runs a whole-vehicle
# campaign on a virtual vehicle on this machine (redstone-vehicle run): the
# cloud, the Master, two Subs and a DoCAN and a DoIP ECU; every ECU from
# 1.0.0 to 2.0.0, then a campaign in which one ECU fails and all go back.
#   bash tools/demo.sh [--workdir DIR] [--keep] [--json]
# The single-node A/B example is: python tools/demo/local_ab.py
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$REDSTONE_ROOT"
exec redstone-vehicle run "$@"
