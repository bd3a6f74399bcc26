#!/usr/bin/env bash
# The README's test command: sets up what it needs, then lint, types, tests.
#   bash tools/test.sh            everything (what CI runs)
#   bash tools/test.sh --fast     skip suites marked slow or system
#   bash tools/test.sh -- ARGS    extra pytest arguments, e.g. -- tests/unit -k journal
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$REDSTONE_ROOT"

marker=()
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fast) marker=(-m "not slow and not system") ;;
        --) shift; pytest_args+=("$@"); break ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) pytest_args+=("$1") ;;
    esac
    shift
done

echo "== ruff"
ruff check src tests tools
ruff format --check src tests tools >/dev/null || { echo "ruff format: run 'ruff format src tests tools'"; exit 1; }
echo "== mypy"
mypy
MYPYPATH=src:. mypy --explicit-package-bases tools  # demo, benchmarks, QEMU harness
echo "== pytest"
if [ ${#marker[@]} -gt 0 ] || [ ${#pytest_args[@]} -gt 0 ]; then
    exec pytest "${marker[@]}" "${pytest_args[@]}"
fi
# Everything: the QEMU guests (CPU-bound, one emulated CPU each) boot beside the other
# suites (mostly waiting on sockets and subprocesses). The vehicle guest (systemd, the
# daemons from the wheel) is the longest QEMU run, so it gets a stream of its own
# beside the boards' tests; their reports are printed after the rest.
vehicle_tests=tests/system/test_vehicle_guest.py
board_log=$(mktemp)
vehicle_log=$(mktemp)
pytest tests/system --ignore="$vehicle_tests" >"$board_log" 2>&1 &
board_pid=$!
pytest "$vehicle_tests" >"$vehicle_log" 2>&1 &
vehicle_pid=$!
status=0
pytest --ignore=tests/system || status=$?
board_status=0
wait "$board_pid" || board_status=$?
vehicle_status=0
wait "$vehicle_pid" || vehicle_status=$?
echo "== pytest tests/system, the boards (ran alongside)"
cat "$board_log"
echo "== pytest $vehicle_tests (ran alongside)"
cat "$vehicle_log"
rm -f "$board_log" "$vehicle_log"
[ "$status" -eq 0 ] && [ "$board_status" -eq 0 ] && [ "$vehicle_status" -eq 0 ]
