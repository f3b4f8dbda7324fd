#!/usr/bin/env bash
# scripts/bench_serve_ab.sh - two (or more) loom builds under the same
# streaming load, in alternating rounds (docs/PERF.md): on a VM whose speed
# drifts by 20% within minutes, only builds measured side by side compare.
#
#   scripts/bench_serve_ab.sh LOOM_A LOOM_B [...]
#
# Each round starts each build's `loom serve` in turn on 127.0.0.1 (MODEL,
# default the SmolLM2 Q4_1 file in the model cache; --parallel 16 --ctx 512
# --threads THREADS), warms it with one short request, runs
# scripts/bench_serve.py with CLIENTS clients (default 16), 2 requests of 64
# tokens each, and prints the load line plus the server's CPU seconds
# (utime + stime from /proc) and the host's steal ticks during the load. CPU
# seconds do not count time the VM was descheduled, so they are the steadier
# of the two measures. ROUNDS (default 3), PORT (default 18556).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 LOOM_A [LOOM_B ...]" >&2; exit 2; }
CACHE=${LOOM_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/models}
MODEL=${MODEL:-$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "bench_serve_ab: no model file $MODEL" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-16}
THREADS=${THREADS:-$(nproc)}
PORT=${PORT:-18556}
URL=http://127.0.0.1:$PORT
SP=""
trap '[ -z "$SP" ] || kill "$SP" 2>/dev/null || true' EXIT
echo "round build | clients | tokens | tok/s | TTFT p50 | TTFT p99 | ITL p50 | cpu_s steal_ticks"
for r in $(seq "$ROUNDS"); do
    for b in "$@"; do
        "$b" serve -m "$MODEL" --host 127.0.0.1 --port "$PORT" --parallel 16 --ctx 512 \
            --threads "$THREADS" --no-access-log >/dev/null 2>&1 &
        SP=$!
        for _ in $(seq 300); do
            curl -s "$URL/health" | grep -q ready && break
            sleep 0.2
        done
        python3 "$ROOT/scripts/bench_serve.py" --url "$URL" --clients 1 --requests 1 \
            --max-tokens 8 >/dev/null
        c0=$(awk '{print $14 + $15}' "/proc/$SP/stat")
        s0=$(awk '/^cpu /{print $9}' /proc/stat)
        line=$(python3 "$ROOT/scripts/bench_serve.py" --url "$URL" --clients "$CLIENTS" \
            --requests 2 --max-tokens 64 | tail -1)
        c1=$(awk '{print $14 + $15}' "/proc/$SP/stat")
        s1=$(awk '/^cpu /{print $9}' /proc/stat)
        tck=$(getconf CLK_TCK)
        echo "$r $b $line $(awk -v a="$c0" -v b="$c1" -v t="$tck" 'BEGIN{printf "%.2f", (b - a) / t}') $((s1 - s0))"
        kill -TERM "$SP"
        wait "$SP" 2>/dev/null || true
        SP=""
    done
done
