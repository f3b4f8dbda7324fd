#!/usr/bin/env bash
# scripts/bench_serve_peers.sh - `loom serve` against llama.cpp's llama-server
# and llama-cpp-python's FastAPI server on one GGUF file, in one run (issue 13
# item 8, docs/PERF.md).
#
#   scripts/bench_serve_peers.sh MODEL.gguf
#
# Each server in turn is started on 127.0.0.1 (a free port), waited for
# (/health; /v1/models for llama-cpp-python, which has no /health), warmed up
# with one short request, loaded by scripts/bench_serve.py --clients $CLIENTS
# (streaming /v1/completions, greedy, the same prompt and max tokens), and
# stopped. ROUNDS > 1 repeats the whole cycle, so that background load falls on
# all servers alike, and reports medians. Then one markdown table: the servers
# side by side, and loom / llama-server ratios.
#
# Same settings for all: THREADS (default: nproc), PARALLEL slots (16; -np for
# llama-server, with continuous batching on; llama-cpp-python's server has one
# model context and serves requests one at a time, queued here rather than
# cancelling the running one: --interrupt_requests false), CTX tokens per slot (512;
# llama-server gets -c PARALLEL*CTX, which it splits across its slots),
# MAX_TOKENS (64), REQUESTS per client (2), CLIENTS (1,4,16), PROMPT.
#
# Servers: LOOM (default build/loom), LOOM_LLAMA_SERVER (default
# .llamacpp/build/bin/llama-server, scripts/build-llamacpp.sh), and
# LOOM_LLAMA_CPP_PYTHON (a python with `llama-cpp-python[server]`, e.g. a
# venv's bin/python). A server that is missing is skipped with a line saying
# why. Server logs and raw results go to OUT (default: a new temp dir).
# Both llama.cpp peers use OpenMP (libgomp): its default spin-wait starved their
# HTTP threads on 2 cores (llama-cpp-python: 3.5 s between one client's tokens;
# llama-server at 16 clients: 8 vs 41 tok/s, loaded), so they run with
# OMP_WAIT_POLICY=$PEER_OMP_WAIT_POLICY (default passive; set "active" to compare).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 MODEL.gguf" >&2; exit 2; }
MODEL=$(realpath "$1")
[ -f "$MODEL" ] || { echo "bench_serve_peers: no model file $1" >&2; exit 2; }
LOOM=${LOOM:-$ROOT/build/loom}
LLAMA_SERVER=${LOOM_LLAMA_SERVER:-$ROOT/.llamacpp/build/bin/llama-server}
LCPP_PY=${LOOM_LLAMA_CPP_PYTHON:-}
THREADS=${THREADS:-$(nproc)}
PARALLEL=${PARALLEL:-16}
CTX=${CTX:-512}
MAX_TOKENS=${MAX_TOKENS:-64}
REQUESTS=${REQUESTS:-2}
CLIENTS=${CLIENTS:-1,4,16}
ROUNDS=${ROUNDS:-1}
PROMPT=${PROMPT:-"Once upon a time, in a land far away,"}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-300}
PEER_OMP=${PEER_OMP_WAIT_POLICY:-passive}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-serve-peers.XXXXXX")}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"

PID=""
stop_server() {
    [ -n "$PID" ] || return 0
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PORT PATH: until GET PATH answers 200 (the server may still be
# loading: 503) or the server exits.
wait_ready() {
    local deadline=$((SECONDS + HEALTH_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$PID" 2>/dev/null || return 1
        if python3 - "$1" "$2" <<'EOF' 2>/dev/null; then return 0; fi
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", sys.argv[2])
sys.exit(0 if c.getresponse().status == 200 else 1)
EOF
        sleep 0.5
    done
    return 1
}

# run_one NAME ROUND: start NAME, load it, stop it; appends to $RESULTS.
run_one() {
    local name=$1 round=$2 port health log cmd
    port=$(free_port)
    log=$OUT/$name.round$round.log
    case $name in
    loom)
        [ -x "$LOOM" ] || { echo "skip loom: no $LOOM (build it, or set LOOM)"; return 0; }
        health=/health
        cmd=("$LOOM" serve -m "$MODEL" --host 127.0.0.1 --port "$port" --parallel "$PARALLEL"
             --ctx "$CTX" --threads "$THREADS" --no-access-log) ;;
    llama-server)
        [ -x "$LLAMA_SERVER" ] || {
            echo "skip llama-server: no $LLAMA_SERVER (scripts/build-llamacpp.sh, or set LOOM_LLAMA_SERVER)"
            return 0; }
        health=/health
        cmd=(env OMP_WAIT_POLICY="$PEER_OMP" "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$port" -t "$THREADS" -tb "$THREADS"
             -np "$PARALLEL" -c $((PARALLEL * CTX)) --cont-batching -ngl 0 --no-webui) ;;
    llama-cpp-python)
        if [ -z "$LCPP_PY" ]; then
            echo "skip llama-cpp-python: set LOOM_LLAMA_CPP_PYTHON to a python with llama-cpp-python[server]"
            return 0
        fi
        "$LCPP_PY" -c 'import llama_cpp.server.app' 2>/dev/null || {
            echo "skip llama-cpp-python: $LCPP_PY cannot import llama_cpp.server (pip install 'llama-cpp-python[server]')"
            return 0; }
        health=/v1/models
        cmd=(env OMP_WAIT_POLICY="$PEER_OMP" "$LCPP_PY" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$port"
             --n_threads "$THREADS" --n_threads_batch "$THREADS" --n_ctx "$CTX" --n_gpu_layers 0
             --interrupt_requests false) ;; # by default a new request cancels the running stream
    esac
    echo "## $name (round $round): ${cmd[*]}" | tee -a "$OUT/commands.txt"
    "${cmd[@]}" > "$log" 2>&1 &
    PID=$!
    if ! wait_ready "$port" "$health"; then
        echo "skip $name: not ready within ${HEALTH_TIMEOUT}s (log: $log)"
        tail -n 5 "$log" >&2 || true
        stop_server
        return 0
    fi
    local url=http://127.0.0.1:$port part=$OUT/$name.round$round.jsonl
    python3 "$ROOT/scripts/bench_serve.py" --url "$url" --clients 1 --requests 1 --max-tokens 4 \
        --prompt "$PROMPT" > /dev/null # warm-up: first-request costs (graph builds, caches)
    python3 "$ROOT/scripts/bench_serve.py" --url "$url" --clients "$CLIENTS" --requests "$REQUESTS" \
        --max-tokens "$MAX_TOKENS" --prompt "$PROMPT" --json "$part"
    stop_server
    sed "s/^{/{\"server\":\"$name\",\"round\":$round,/" "$part" >> "$RESULTS"
}

echo "model $MODEL; threads $THREADS, $PARALLEL slots x $CTX tokens, clients $CLIENTS," \
     "$REQUESTS requests each, max_tokens $MAX_TOKENS, greedy, rounds $ROUNDS; logs in $OUT"
for r in $(seq "$ROUNDS"); do
    for s in loom llama-server llama-cpp-python; do
        run_one "$s" "$r"
    done
done

python3 - "$RESULTS" "$CLIENTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
servers = ["loom", "llama-server", "llama-cpp-python"]
cell = {}
for r in rows:
    cell.setdefault((r["server"], r["clients"]), []).append(r)

def med(s, n, k):
    v = [r[k] for r in cell.get((s, n), [])]
    return statistics.median(v) if v else None

def f(x, fmt="%.1f"):
    return fmt % x if x is not None else "-"

print()
print("| clients | " + " | ".join("%s tok/s (tokens)" % s for s in servers) +
      " | loom / llama-server tok/s | " +
      " | ".join("%s TTFT p50 / p99 ms" % s for s in servers) + " | " +
      " | ".join("%s ITL p50 ms" % s for s in servers) + " | loom / llama-server ITL |")
print("|---:" * (1 + 3 + 1 + 3 + 3 + 1) + "|")
for n in [int(x) for x in sys.argv[2].split(",")]:
    tps = {s: med(s, n, "tok_s") for s in servers}
    itl = {s: med(s, n, "itl_p50_ms") for s in servers}
    ratio = (tps["loom"] / tps["llama-server"]) if tps["loom"] and tps["llama-server"] else None
    iratio = (itl["loom"] / itl["llama-server"]) if itl["loom"] and itl["llama-server"] else None
    cols = [str(n)]
    cols += ["%s (%s)" % (f(tps[s]), f(med(s, n, "tokens"), "%d")) if tps[s] is not None else "-"
             for s in servers]
    cols.append(f(ratio, "%.2f×"))
    cols += ["%s / %s" % (f(med(s, n, "ttft_p50_ms")), f(med(s, n, "ttft_p99_ms"))) for s in servers]
    cols += [f(itl[s]) for s in servers]
    cols.append(f(iratio, "%.2f×"))
    print("| " + " | ".join(cols) + " |")
EOF
