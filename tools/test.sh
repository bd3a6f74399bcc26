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
# Everything: the QEMU guests (CPU-bound, no network) boot beside the other suites
# (mostly waiting on sockets and subprocesses), which keeps CI within its budget on
# 2 cores. The guests' report is printed after the rest.
system_log=$(mktemp)
pytest tests/system >"$system_log" 2>&1 &
system_pid=$!
status=0
pytest --ignore=tests/system || status=$?
system_status=0
wait "$system_pid" || system_status=$?
echo "== pytest tests/system (ran alongside)"
cat "$system_log"
rm -f "$system_log"
[ "$status" -eq 0 ] && [ "$system_status" -eq 0 ]
