#!/usr/bin/env bash
# scripts/install-python-test-deps.sh - pip-installs scripts/requirements-test.txt
# for the python3 on PATH (the one ctest runs) when a package is not importable.
# Called by scripts/install-deps.sh on every run, after the apt packages.
set -euo pipefail

log() { printf 'install-deps (python): %s\n' "$*"; }
REQ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements-test.txt"
# import name of each requirement (pip name -> module name, where they differ)
MODULES=(gguf numpy openai websocket tensorboard)

missing=()
for m in "${MODULES[@]}"; do
    python3 -c "import $m" >/dev/null 2>&1 || missing+=("$m")
done
if [ ${#missing[@]} -eq 0 ]; then
    log "python test packages present (${MODULES[*]})"
    exit 0
fi

log "not importable: ${missing[*]}; installing from $REQ with $(command -v python3)"
PIP=(python3 -m pip install --disable-pip-version-check -q -r "$REQ")
if [ "$(id -u)" -ne 0 ]; then
    PIP+=(--user)
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    log "python3 has no pip module (apt package python3-pip)"
    exit 1
fi
# Debian's system python refuses pip installs (PEP 668) unless told otherwise.
if ! "${PIP[@]}"; then
    log "retrying with --break-system-packages (externally managed python)"
    "${PIP[@]}" --break-system-packages
fi
for m in "${missing[@]}"; do
    if ! python3 -c "import $m" >/dev/null 2>&1; then
        log "still cannot import $m after pip install"
        exit 1
    fi
done
log "installed: $(python3 -m pip list --disable-pip-version-check 2>/dev/null | grep -Ei '^(gguf|numpy|openai|websocket-client|tensorboard) ' | tr -s ' ' | paste -sd, -)"
