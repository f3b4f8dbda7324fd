#!/usr/bin/env bash
# bench/perf.sh - reproduce the tables of docs/PERF.md.
#   bench/perf.sh [BUILD_DIR] [OUT_DIR]
# Runs `loom bench ops --shapes llama3-8b` for the AVX-512 and AVX2 kernel
# paths on 1 and 2 threads (decode matmuls and attention on both thread
# counts; prefill, GEMM and row ops on all threads), writing one JSON and one
# table per run. Needs ~2 GB of RAM; run it on an otherwise idle machine.
# The prefill/GEMM runs also time OpenBLAS and oneDNN on the same shapes
# (`--peers`, loaded with dlopen when installed:
#   apt-get install libopenblas0-pthread libdnnl-dev).
# OpenBLAS 0.3.21 does not recognise Zen 5 and runs its AVX2 kernels at half
# speed unless told the core type; a newer OpenBLAS ignores a correct hint.
set -euo pipefail
grep -qw avx512f /proc/cpuinfo && export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
BUILD=${1:-build}
OUT=${2:-bench/results}
mkdir -p "$OUT"
for isa in avx512 avx2; do
    for t in 1 2; do
        LOOM_CPU_ISA=$isa "$BUILD/loom" bench ops --shapes llama3-8b --threads "$t" \
            --op decode --format json >"$OUT/decode-$isa-${t}t.json"
        LOOM_CPU_ISA=$isa "$BUILD/loom" bench ops --shapes llama3-8b --threads "$t" \
            --op decode --compare "$OUT/decode-$isa-${t}t.json" | tee "$OUT/decode-$isa-${t}t.txt"
    done
    LOOM_CPU_ISA=$isa "$BUILD/loom" bench ops --shapes llama3-8b --threads 2 --op prefill \
        | tee "$OUT/prefill-$isa-2t.txt"
    LOOM_CPU_ISA=$isa "$BUILD/loom" bench ops --shapes llama3-8b --threads 2 --op gemm \
        | tee "$OUT/gemm-$isa-2t.txt"
    LOOM_CPU_ISA=$isa "$BUILD/loom" bench ops --shapes llama3-8b --threads 2 --op '[' \
        | tee "$OUT/rows-$isa-2t.txt"
done
