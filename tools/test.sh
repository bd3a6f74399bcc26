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
# suites (mostly waiting on sockets and subprocesses). The QEMU tests run in two streams
# of about equal length — the boards and the vehicle guest (Master and Sub under systemd),
# and the TBox updating itself — so neither queues behind the other; their reports are
# printed after the rest.
tbox_tests=tests/system/test_tbox_self_update.py
board_log=$(mktemp)
tbox_log=$(mktemp)
# --durations: CI's report says where the time went (the budget is about 15 minutes).
pytest --durations=12 tests/system --ignore="$tbox_tests" >"$board_log" 2>&1 &
board_pid=$!
pytest --durations=6 "$tbox_tests" >"$tbox_log" 2>&1 &
tbox_pid=$!
status=0
pytest --durations=25 --ignore=tests/system || status=$?
board_status=0
wait "$board_pid" || board_status=$?
tbox_status=0
wait "$tbox_pid" || tbox_status=$?
echo "== pytest tests/system: boards and vehicle guest (ran alongside)"
cat "$board_log"
echo "== pytest $tbox_tests (ran alongside)"
cat "$tbox_log"
rm -f "$board_log" "$tbox_log"
[ "$status" -eq 0 ] && [ "$board_status" -eq 0 ] && [ "$tbox_status" -eq 0 ]
