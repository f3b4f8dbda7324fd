#!/usr/bin/env bash
# scripts/bench_spec.sh - speculative decoding's speed-up and acceptance rate
# (docs/adr/0038, docs/PERF.md "Speculative decoding").
#
#   scripts/bench_spec.sh [LOOM] [N_TOKENS] [REPEATS]
#
# SmolLM2-135M-Instruct from the model cache: the Q4_1 file is the draft, a
# q8_0 export of it (made once under $TMPDIR) the target. Greedy, two
# prompts (repetitive text, and an ordinary one), three ways: plain decoding,
# --spec lookup, --draft Q4_1 (stopping at EOS). Prints generation tok/s (the best of REPEATS
# runs), the ratio to plain decoding of the same run, the acceptance rate,
# and whether the text equals plain decoding's (it must).
set -euo pipefail
LOOM=${1:-build/loom}
N=${2:-128}
REPEATS=${3:-3}
CACHE=${LOOM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/models}
DRAFT=$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
TMP=${TMPDIR:-/tmp}/loom-bench-spec
TARGET=$TMP/SmolLM2-135M-Instruct.q8_0.gguf
[ -f "$DRAFT" ] || { echo "bench_spec: $DRAFT is missing (scripts/fetch-default-model.sh)" >&2; exit 1; }
mkdir -p "$TMP"
[ -f "$TARGET" ] || "$LOOM" export-gguf -m "$DRAFT" -o "$TARGET" --type q8_0 >/dev/null

REPETITIVE='Shopping list:
- red apples, 3 kg, from the market on Monday
- green pears, 2 kg, from the market on Monday
- yellow bananas, 5 kg, from the shop on Tuesday
- purple plums, 1 kg, from the shop on Tuesday
- white onions, 2 kg, from the farm on Friday
- orange carrots, 4 kg, from the farm on Friday

The same list again, copied exactly:
- red apples, 3 kg,'
NORMAL='Write a short story about a lighthouse keeper who finds a message in a bottle.'

# run NAME PROMPT FLAGS... -> "tok/s accepted% text-md5" (the best tok/s)
run() {
    local prompt=$1
    shift
    local best=0 acc=- md5=
    for _ in $(seq "$REPEATS"); do
        "$LOOM" run -m "$TARGET" -p "$prompt" -n "$N" --temp 0 "$@" \
            >"$TMP/out.txt" 2>"$TMP/err.txt"
        local line tps
        line=$(grep '^backend' "$TMP/err.txt")
        tps=$(sed -E 's/.*generation [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/' <<<"$line")
        if grep -q 'accepted' <<<"$line"; then
            acc=$(sed -E 's/.*accepted [0-9]+ \(([0-9.]+)%\).*/\1/' <<<"$line")
        fi
        best=$(awk -v a="$best" -v b="$tps" 'BEGIN { print (b > a ? b : a) }')
        md5=$(md5sum <"$TMP/out.txt" | cut -c1-8)
    done
    echo "$best $acc $md5"
}

printf '%-11s %-22s %9s %7s %9s %s\n' prompt mode "tok/s" ratio "accepted" "same text"
for which in ${BENCH_SPEC_PROMPTS:-repetitive normal}; do
    # the ordinary prompt ends at once in EOS without a chat template: ignore it
    if [ $which = repetitive ]; then p=$REPETITIVE; x=; else p=$NORMAL; x=--ignore-eos; fi
    read -r base _ md5_0 <<<"$(run "$p" $x)"
    printf '%-11s %-22s %9.1f %7s %9s %s\n' $which plain "$base" 1.00 - -
    for mode in "--spec lookup" "--draft $DRAFT"; do
        # shellcheck disable=SC2086
        read -r tps acc md5 <<<"$(run "$p" $x $mode)"
        name=${mode/$DRAFT/Q4_1}
        printf '%-11s %-22s %9.1f %7.2f %8s%% %s\n' $which "$name" "$tps" \
            "$(awk -v a="$tps" -v b="$base" 'BEGIN { print a / b }')" "$acc" \
            "$([ "$md5" = "$md5_0" ] && echo yes || echo NO)"
    done
done
