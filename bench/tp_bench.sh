#!/bin/sh
# bench/tp_bench.sh [LOOM] [ROUNDS] - `loom run --tp 2` on 2 MPI ranks x 1
# thread against one rank x 2 threads (equal total threads), alternated, on
# init-model's small-110m (docs/PERF.md, docs/adr/0034); then the same
# machine's bare MPI all-reduce latency with 0.3 ms of work between calls
# (bench/mpi_latency.c, built with mpicc), which tells a loaded machine's
# scheduling latency apart from loom's cost.
set -eu
loom=${1:-build/loom} rounds=${2:-3}
dir=${TMPDIR:-/tmp}/loom_tp_bench
mkdir -p "$dir"
m="$dir/small110m.gguf"
[ -f "$m" ] || "$loom" init-model --preset small-110m -o "$m" >/dev/null
p="The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill of the old farmhouse near the river"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
r=1
while [ "$r" -le "$rounds" ]; do
    echo "round $r, $(uptime | sed 's/.*load/load/')"
    LOOM_THREADS=2 "$loom" run -m "$m" --backend cpu --temp 0 -n 16 -p "$p" 2>&1 >/dev/null |
        grep "tok/s" | sed 's/^/  1 rank x 2 threads: /'
    LOOM_THREADS=1 mpirun -np 2 --oversubscribe "$loom" run --tp 2 -m "$m" --backend cpu --temp 0 \
        -n 16 -p "$p" 2>"$dir/tp.err" >/dev/null
    grep -E "tok/s|all-reduces" "$dir/tp.err" | head -2 | sed 's/^/  2 ranks x 1 thread: /'
    r=$((r + 1))
done
mpicc -O2 "$(dirname "$0")/mpi_latency.c" -o "$dir/mpi_latency"
mpirun -np 2 --oversubscribe "$dir/mpi_latency"
