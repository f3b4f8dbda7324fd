#!/bin/sh
# tests/train/finetune_real.sh LOOM - a short real fine-tune in CI (issue 19):
# `loom finetune` on the default model, SmolLM2-135M-Instruct Q4_1 (the
# frozen base as stored), three steps on one chat example at a high learning
# rate; the training loss and the loss on that example (as the --eval set)
# must go down, and the adapter must load with `loom run --lora`.
# Skipped (77) without the model (scripts/fetch-default-model.sh). The long
# run with held-out data is scripts/finetune_pydoc.sh.
set -eu
LOOM=$1
MODEL=${LOOM_REAL_MODEL:-$HOME/.cache/loom/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "finetune_real: SKIP: no $MODEL"; exit 77; }
W=$(mktemp -d /tmp/loom_ft_real.XXXXXX)
trap 'rm -rf "$W"' EXIT
cat > "$W/d.jsonl" <<'J'
{"messages": [{"role": "user", "content": "What is a list comprehension in Python?"}, {"role": "assistant", "content": "A list comprehension builds a list from an iterable in one expression: [x * x for x in range(10)]."}]}
J
"$LOOM" --backend cpu finetune -m "$MODEL" --data "$W/d.jsonl" --eval "$W/d.jsonl" -o "$W/out" \
    --max-steps 3 --seq 64 --grad-accum 1 --lora-r 8 --lora-alpha 16 --lora-dropout 0 \
    --lr 2e-3 --warmup-ratio 0 --quiet > "$W/log" 2>&1 || { cat "$W/log"; exit 1; }
cat "$W/log"
# "finetune: 3 steps, loss A -> B, ..., eval loss C -> D"
awk '/^finetune: 3 steps/ {
        for (i = 1; i <= NF; i++) {
            if ($i == "loss" && $(i-1) == "steps,") { a = $(i+1); b = $(i+3) }
            if ($i == "loss" && $(i-1) == "eval") { c = $(i+1); d = $(i+3) }
        }
        sub(",", "", b)
        ok = (b + 0 < a + 0) && (d + 0 < c + 0)
        printf "training loss %s -> %s, eval loss %s -> %s\n", a, b, c, d
     }
     END { exit ok ? 0 : 1 }' "$W/log" || { echo "finetune_real: FAIL: loss did not go down"; exit 1; }
"$LOOM" --backend cpu run -m "$MODEL" --lora "$W/out" -p "What is a list comprehension?" -n 4 \
    --temp 0 > "$W/run" 2>&1 || { cat "$W/run"; exit 1; }
grep -q "applied unmerged" "$W/run" || { cat "$W/run"; exit 1; }
echo "finetune_real: ok"
