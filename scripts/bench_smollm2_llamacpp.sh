#!/usr/bin/env bash
# scripts/bench_smollm2_llamacpp.sh - prompt and generation tokens/s of
# SmolLM2-135M-Instruct at Q4_1 (the release) and Q8_0 (written from it by
# `loom export-gguf`), loom against llama.cpp's llama-bench, interleaved
# (docs/PERF.md, issue 16 deliverable 6).
#
#   scripts/bench_smollm2_llamacpp.sh LOOM [OUT.jsonl]
#
# ROUNDS times (default 3): for each file and thread count (THREADS, default
# "1 2"), `loom bench model` then `llama-bench`, the same -p/-n/-r, one right
# after the other, so that background load on a shared machine falls on both
# alike; every record goes to OUT.jsonl (both tools write llama-bench's JSON
# fields) and a table of medians and loom/llama.cpp ratios is printed.
# LLAMA_BENCH: llama-bench (default .llamacpp/build/bin/llama-bench,
# scripts/build-llamacpp.sh). PP (default 128), TG (default 32), REPS (2).
set -euo pipefail
LOOM=$(realpath "$1")
OUT=${2:-${TMPDIR:-/tmp}/loom-smollm2-bench.jsonl}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${LOOM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/models}
SRC=$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
LLAMA=${LLAMA_BENCH:-$ROOT/.llamacpp/build/bin/llama-bench}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-"1 2"}
PP=${PP:-128}
TG=${TG:-32}
REPS=${REPS:-2}
[ -f "$SRC" ] || { echo "no $SRC (scripts/fetch-default-model.sh)" >&2; exit 1; }
[ -x "$LLAMA" ] || { echo "no llama-bench at $LLAMA (scripts/build-llamacpp.sh)" >&2; exit 1; }
Q8=$(dirname "$OUT")/smollm2-q8_0.gguf
[ -f "$Q8" ] || "$LOOM" export-gguf -m "$SRC" -o "$Q8" --type q8_0 >/dev/null
: > "$OUT"
for r in $(seq "$ROUNDS"); do
    for f in "$SRC" "$Q8"; do
        for t in $THREADS; do
            "$LOOM" --backend cpu bench model -m "$f" -p "$PP" -n "$TG" -t "$t" -r "$REPS" \
                -o jsonl 2>/dev/null | sed "s/^{/{\"engine\":\"loom\",\"round\":$r,/" >> "$OUT"
            "$LLAMA" -m "$f" -p "$PP" -n "$TG" -t "$t" -r "$REPS" -o jsonl 2>/dev/null |
                sed "s/^{/{\"engine\":\"llama.cpp\",\"round\":$r,/" >> "$OUT"
        done
    done
done
python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cell = {}
for r in rows:
    name = "Q4_1" if "Q4_1" in r["model_filename"] else "Q8_0"
    test = "pp" if r.get("n_prompt", 0) else "tg"
    cell.setdefault((name, r["n_threads"], test, r["engine"]), []).append(r["avg_ts"])
print("| file | threads | test | loom t/s (median) | llama.cpp t/s (median) | loom / llama.cpp "
      "(median of per-round ratios) | rounds |")
print("|---|---:|---|---:|---:|---:|---:|")
for (name, t, test, eng) in sorted(k for k in cell if k[3] == "loom"):
    lo, ll = cell[(name, t, test, "loom")], cell.get((name, t, test, "llama.cpp"), [])
    ratios = [a / b for a, b in zip(lo, ll) if b]
    print("| %s | %d | %s | %.1f | %s | %s | %d |" % (
        name, t, test, statistics.median(lo),
        "%.1f" % statistics.median(ll) if ll else "n/a",
        "%.2f× (%.2f–%.2f)" % (statistics.median(ratios), min(ratios), max(ratios))
        if ratios else "n/a", len(lo)))
EOF
