#!/bin/sh
# tests/model/tp_cli.sh LOOM MPIRUN DIR TP_MPI - `mpirun -np 2 loom run --tp 2`
# prints the same greedy text as `loom run` on one rank (tp_mpi's small random
# model: a dense and a MoE layer, a byte-level vocabulary), also with the
# weights quantized to q8_0 on load, and --tp without mpirun is a one-line
# usage error.
set -eu
loom=$1 mpirun=$2 dir=$3 tp_mpi=$4
mkdir -p "$dir"
m="$dir/tiny.gguf"
"$tp_mpi" --write-model "$m"
for q in f32 q8_0; do
    args="-m $m --backend cpu --temp 0 -n 24 -p 'Once upon a time' --kv-type f32 --quant $q"
    eval "\"$loom\" run $args" >"$dir/one.txt" 2>"$dir/one.err"
    eval "\"$mpirun\" -np 2 --oversubscribe \"$loom\" run --tp 2 $args" >"$dir/two.txt" 2>"$dir/two.err"
    if ! cmp -s "$dir/one.txt" "$dir/two.txt"; then
        echo "tp_cli: 2-rank text differs from 1-rank ($q):"; cat "$dir/one.txt" "$dir/two.txt"; exit 1
    fi
    echo "tp_cli: same text ($q): $(head -c 80 "$dir/one.txt" | tr -cd "[:print:]")"
done
if "$loom" run --tp 2 -m "$m" -n 1 >"$dir/bad.out" 2>"$dir/bad.err"; then
    echo "tp_cli: --tp 2 without mpirun succeeded"; exit 1
fi
grep -q "start it with mpirun" "$dir/bad.err" || { echo "tp_cli: bad message:"; cat "$dir/bad.err"; exit 1; }
echo "tp_cli: ok"
