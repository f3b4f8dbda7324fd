#!/usr/bin/env bash
# bench/gpu_run.sh - one whole GPU session: devices, the parity suite on the
# CUDA (and, when its driver is found, Vulkan) backend, `loom bench ops` on
# each, and the PyTorch peers (bench/gpu_peers.py), everything logged to OUT.
#   bench/gpu_run.sh BIN_DIR OUT_DIR
# BIN_DIR holds loom, libloom.so and the backend plugins (a build dir, or a
# bundle made by `bench/gpu_bundle.sh` with the shared libraries they need).
set -uo pipefail
BIN=$(cd "${1:?BIN_DIR}" && pwd)
OUT=${2:?OUT_DIR}
SRC=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LOOM_PLUGIN_DIR="$BIN"
export LOOM_SOURCE_DIR="$SRC"
export LOOM_VULKAN_ALLOW_CPU=0
# The CUDA plugin needs libcudart/libcublas 13: the toolkit's, else PyTorch's wheels.
if ldd "$BIN/libloom-backend-cuda.so" | grep -q "not found"; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
        $(python3 -c 'import nvidia, os; p = nvidia.__path__[0]; print(" ".join(os.path.join(p, x, "lib") for x in os.listdir(p)))' 2>/dev/null); do
        [ -d "$d" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
    done
fi
ldd "$BIN/libloom-backend-cuda.so" | grep -E "cudart|cublas"
# The NVIDIA Vulkan ICD may live outside the loader's default search path.
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$icd; fi
done
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"; [ -n "${VK_DRIVER_FILES:-}" ] && cat "$VK_DRIVER_FILES"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

log "nvidia-smi"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee -a "$OUT/summary.txt"
log "loom devices"
"$BIN/loom" devices 2>&1 | tee -a "$OUT/summary.txt"

for be in cuda vulkan; do
    log "loom test-ops --backend $be"
    timeout 200 "$BIN/loom" test-ops --backend "$be" --golden "$SRC/tests/golden" >"$OUT/parity-$be.txt" 2>&1
    echo "rc=$?" >>"$OUT/parity-$be.txt"
    grep -E "FAIL|passed|rc=|unavailable|error" "$OUT/parity-$be.txt" | head -60 | tee -a "$OUT/summary.txt"
done

for be in cuda vulkan; do
    log "loom bench ops --backend $be --shapes llama3-8b"
    timeout 120 "$BIN/loom" bench ops --backend "$be" --shapes llama3-8b --format json \
        >"$OUT/bench-$be.json" 2>"$OUT/bench-$be.err"
    echo "rc=$?" >>"$OUT/bench-$be.err"
    cat "$OUT/bench-$be.json" "$OUT/bench-$be.err" | tee -a "$OUT/summary.txt"
done

log "cuda kernel variants"
for m in tiled split warp; do
    echo "LOOM_CUDA_FA=$m: $(LOOM_CUDA_FA=$m timeout 60 "$BIN/loom" test-ops --backend cuda --op flash_attn --golden none 2>&1 | tail -1)" | tee -a "$OUT/summary.txt"
done
for v in "LOOM_CUDA_QGEMM_MIN_M=16" "LOOM_CUDA_QGEMM=tiled"; do
    echo "$v: $(env $v timeout 60 "$BIN/loom" test-ops --backend cuda --op matmul --golden none 2>&1 | tail -1)" | tee -a "$OUT/summary.txt"
done
# MoE: the grouped expert GEMM (prefill) and the per-token warp kernels, forced
# for every case; then the moe bench rows (T=1 decode, T=16 prefill) per mode.
for m in grouped warp; do
    echo "LOOM_CUDA_MOE=$m: $(LOOM_CUDA_MOE=$m timeout 120 "$BIN/loom" test-ops --backend cuda --op moe --golden none 2>&1 | tail -1)" | tee -a "$OUT/summary.txt"
done
for m in auto grouped warp; do
    echo "LOOM_CUDA_MOE=$m bench:" | tee -a "$OUT/summary.txt"
    LOOM_CUDA_MOE=$m timeout 60 "$BIN/loom" bench ops --backend cuda --shapes llama3-8b --op moe 2>&1 | tail -4 | tee -a "$OUT/summary.txt"
done
log "loom run (default model) on cuda"
(cd "$OUT" && timeout 60 "$BIN/loom" init-model --preset tiny-moe -o tiny.gguf >/dev/null 2>&1 && \
    timeout 60 "$BIN/loom" run -m tiny.gguf -p "Once upon a time" -n 64 --backend cuda 2>&1 | tail -3; rm -f tiny.gguf) | tee -a "$OUT/summary.txt"
log "pytorch peers"
PYTHONUNBUFFERED=1 python3 "$SRC/bench/gpu_peers.py" 2>&1 | tee "$OUT/peers.jsonl" | tee -a "$OUT/summary.txt"
