#!/usr/bin/env bash
# The README's main job answers its question correctly (issue 16's check):
# `loom chat` with the default model (SmolLM2-135M-Instruct Q4_1, fetched by
# scripts/install-deps.sh) must say "Paris". Run once per cpu activation path
# (LOOM_CPU_ACT from the ctest environment): int8 activations once tipped the
# first answer token, a near tie, to "L'Étoile..." (ADR 0036 addendum 3).
# Skips (77) when the model cache has no default model.
set -euo pipefail
loom=$1
cache=${LOOM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/models}
model=$cache/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$model" ]; then
    echo "SKIP: $model not found (scripts/fetch-default-model.sh fetches it)"
    exit 77
fi
out=$("$loom" chat -m "$model" --backend cpu -p "What is the capital of France?" -n 16 --temp 0 2>&1)
printf '%s\n' "$out"
if ! grep -q "Paris" <<<"$out"; then
    echo "FAIL: the answer does not name Paris (LOOM_CPU_ACT=${LOOM_CPU_ACT:-default})"
    exit 1
fi
echo "ok: answer names Paris (LOOM_CPU_ACT=${LOOM_CPU_ACT:-default})"
