#!/usr/bin/env bash
# tests/gpu/emu/run_emu_parity.sh - run the parity suite on the CUDA backend's
# kernels emulated on the CPU (kernels/cuda/emu.h): checks the kernels' index
# math and arithmetic against kernels/ref without a GPU. Not the real thing:
# no cuBLAS path (LOOM_HAVE_BLAS=0, as HIP without hipBLAS), no real memory
# model, blocks run one at a time. Usage: run_emu_parity.sh [test-ops args...]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
BUILD=${LOOM_EMU_BUILD:-$SRC/build-emu}
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLOOM_CUDA=OFF -DLOOM_HIP=OFF \
      -DLOOM_VULKAN=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target loom_cli >/dev/null
mkdir -p "$BUILD/emu"
objs=()
for f in "$SRC"/kernels/cuda/*.cu "$SRC"/backends/cuda/loom_backend_cuda.cu; do
    out="$BUILD/emu/$(basename "$f" .cu).cpp"
    python3 "$SRC/tests/gpu/emu/rewrite_launch.py" "$f" >"$out"
    objs+=("$out")
done
g++ -std=c++17 -O1 -g -fPIC -shared -DLOOM_EMU -I"$SRC" -I"$SRC/include" "${objs[@]}" \
    "$SRC/tests/gpu/emu/emu_globals.cpp" -o "$BUILD/libloom-backend-cuda.so" \
    -L"$BUILD" -lloom -pthread -Wl,-rpath,"$BUILD"
LOOM_PLUGIN_DIR="$BUILD" "$BUILD/loom" test-ops --backend cuda "$@"
