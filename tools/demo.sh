#!/usr/bin/env bash
# The README's main job: sets up what it needs, then runs the demo.
#   bash tools/demo.sh [--workdir DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$REDSTONE_ROOT"
exec python tools/demo/local_ab.py "$@"
