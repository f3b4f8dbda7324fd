#!/bin/sh
# tests/model/tp_cli.sh LOOM MPIRUN DIR TP_MPI - `mpirun -np 2 loom run --tp 2`
# prints the same greedy text as `loom run` on one rank (tp_mpi's small random
# model: a dense and a MoE layer, a byte-level vocabulary), also with the
# weights quantized to q8_0 on load and with --comm mpi named, --comm nccl
# without a GPU and --tp without mpirun are one-line errors.
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
# --comm mpi by name: the same text; --comm nccl (the default on cuda) needs
# libnccl and a CUDA device: without them each rank says why in one line.
eval "\"$mpirun\" -np 2 --oversubscribe \"$loom\" run --tp 2 --comm mpi $args" >"$dir/mpi.txt" 2>"$dir/mpi.err"
cmp -s "$dir/one.txt" "$dir/mpi.txt" || { echo "tp_cli: --comm mpi text differs"; exit 1; }
if "$mpirun" -np 2 --oversubscribe "$loom" run --tp 2 --comm nccl -m "$m" --backend cpu -n 1 \
    >"$dir/nccl.out" 2>"$dir/nccl.err"; then
    echo "tp_cli: --comm nccl ran (NCCL and a CUDA device are present)"
else
    grep -q "^loom run: --tp 2 (--comm nccl): nccl: " "$dir/nccl.err" ||
        { echo "tp_cli: --comm nccl without a GPU: bad message:"; cat "$dir/nccl.err"; exit 1; }
    echo "tp_cli: --comm nccl: $(grep -m1 '^loom run' "$dir/nccl.err")"
fi
if "$loom" run --tp 2 -m "$m" -n 1 >"$dir/bad.out" 2>"$dir/bad.err"; then
    echo "tp_cli: --tp 2 without mpirun succeeded"; exit 1
fi
grep -q "start it with mpirun" "$dir/bad.err" || { echo "tp_cli: bad message:"; cat "$dir/bad.err"; exit 1; }
echo "tp_cli: ok"
