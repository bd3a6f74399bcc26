#!/usr/bin/env bash
# Sourced by tools/demo.sh and tools/test.sh: makes this checkout runnable on a
# fresh Debian machine. Installs missing Debian packages (only as root), creates
# .venv and installs the project with its dev extras. Idempotent and quick when
# nothing changed.
set -euo pipefail

REDSTONE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REDSTONE_ROOT

_log() { printf 'bootstrap: %s\n' "$*" >&2; }

_debian_packages() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$REDSTONE_ROOT/tools/debian-packages.txt" | awk '{print $1}'
}

_install_debian_packages() {
    command -v dpkg-query >/dev/null 2>&1 || return 0
    local missing=()
    local pkg
    for pkg in $(_debian_packages); do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        _log "not root: cannot install ${missing[*]}; tests that need them will be skipped"
        return 0
    fi
    _log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    _log "Python >= 3.11 is required"
    return 1
}

_install_venv() {
    local venv="$REDSTONE_ROOT/.venv"
    local stamp="$venv/.redstone-installed"
    local want
    want="$(sha256sum <"$REDSTONE_ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ ! -x "$venv/bin/python" ]; then
        _log "creating $venv"
        "$(_python)" -m venv "$venv"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        _log "installing Python packages into .venv (first run takes a minute)"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$REDSTONE_ROOT[dev]"
        echo "$want" >"$stamp"
    fi
}

_install_debian_packages
_install_venv
export PATH="$REDSTONE_ROOT/.venv/bin:$PATH"
