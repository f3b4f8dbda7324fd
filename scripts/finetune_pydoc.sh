#!/bin/sh
# scripts/finetune_pydoc.sh - the README's real fine-tune (issue 19): LoRA on
# SmolLM2-135M-Instruct with question/answer pairs from the FAQ pages of
# Debian's python3.11-doc (apt install python3.11-doc), ~14% held out, the
# held-out loss before and after (docs/PERF.md, docs/adr/0033).
#
#   scripts/finetune_pydoc.sh [LOOM] [WORKDIR]      (STEPS, SEQ, LR override)
#
# 1. `loom data prep` turns the FAQ HTML into 178 chat records (question ->
#    answer, split at the <h3> headings);
# 2. every 7th record is held out (25 eval, 153 train; a fixed split, so runs
#    compare);
# 3. `loom finetune --pack`: r 16, alpha 32, dropout 0.05 on all seven
#    projections, AdamW lr 5e-4 cosine with 10% warmup, batch 1 (one packed
#    sequence of SEQ = 256 tokens: one long or two short examples), no
#    accumulation, clip 1.0, STEPS = 18 optimizer steps (~25 examples), the
#    held-out loss (per answer token, examples cut at SEQ) before and after.
# Sized for a 2-core machine shared by ~8 people (~25 min there: a step is
# ~60 s, most of it per-step work on the frozen weights, so longer sequences
# cost little more); on an idle machine it is a few minutes. Not in CI
# (test_finetune_real is CI's short real run).
set -eu
LOOM=${1:-build/loom}
WORK=${2:-/tmp/loom_finetune_pydoc}
STEPS=${STEPS:-18}
SEQ=${SEQ:-256}
LR=${LR:-5e-4}
DOC=/usr/share/doc/python3.11/html
MODEL=${MODEL:-$HOME/.cache/loom/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -d "$DOC/faq" ] || { echo "python3.11-doc is not installed (apt install python3.11-doc)"; exit 77; }
[ -f "$MODEL" ] || { echo "no $MODEL (scripts/fetch-default-model.sh)"; exit 77; }
mkdir -p "$WORK"
"$LOOM" data prep --html "$DOC/faq" --qa-heading 3 -o "$WORK/faq.jsonl" --report "$WORK/faq.json"
awk 'NR % 7 == 0' "$WORK/faq.jsonl" > "$WORK/eval.jsonl"
awk 'NR % 7 != 0' "$WORK/faq.jsonl" > "$WORK/train.jsonl"
echo "train $(wc -l < "$WORK/train.jsonl") records, held out $(wc -l < "$WORK/eval.jsonl")"
/usr/bin/time -f "finetune: %e s wall, %U s user, %M KB peak" \
    "$LOOM" finetune -m "$MODEL" --data "$WORK/train.jsonl" --eval "$WORK/eval.jsonl" \
    -o "$WORK/out" --pack --max-steps "$STEPS" --seq "$SEQ" --grad-accum 1 --lora-r 16 \
    --lora-alpha 32 --lora-dropout 0.05 --lr "$LR" --warmup-ratio 0.1 --seed 42
grep eval_loss "$WORK/out/train_log.jsonl"
