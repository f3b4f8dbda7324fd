#!/usr/bin/env python3
"""bench/gpu_peers.py - the peers `loom bench ops --backend cuda` is compared
with in docs/PERF.md, measured with PyTorch on the same GPU in the same run:

  * device-to-device copy bandwidth (bytes read + written), the roofline for
    bandwidth-bound ops such as decode matmul;
  * cuBLAS through torch.matmul on the shapes of the llama3-8b set
    (f32 with TF32 off, as loom's cublasGemmEx with CUBLAS_COMPUTE_32F; f16/bf16);
  * torch.nn.functional.scaled_dot_product_attention on the flash_attn shapes
    (GQA via enable_gqa, f16).

Prints one JSON object per line: {"peer": NAME, "ms": best, "ms_median": ...}.
Run by bench/gpu_run.sh; needs torch with CUDA. Not used by CI.
"""
import json
import sys

import torch
import torch.nn.functional as F


def timeit(fn, min_iters=20):
    """Best and median time in ms over CUDA-event-timed iterations."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(min_iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[0], times[len(times) // 2]


def emit(name, best, med, **extra):
    d = {"peer": name, "ms": round(best, 5), "ms_median": round(med, 5)}
    d.update(extra)
    print(json.dumps(d), flush=True)


def main():
    if not torch.cuda.is_available():
        print("gpu_peers: no CUDA device", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    props = torch.cuda.get_device_properties(0)
    print(json.dumps({"device": props.name, "sms": props.multi_processor_count,
                      "torch": torch.__version__}), flush=True)

    # Copy bandwidth: 1 GiB buffer, read + write counted.
    n = 1 << 28
    src = torch.empty(n, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    best, med = timeit(lambda: dst.copy_(src))
    emit("d2d copy 1GiB", best, med, gbs=round(2 * 4 * n / best / 1e6, 1))
    del src, dst

    # GEMMs: loom computes y[M,N] = x[M,K] @ W[N,K]^T.
    gemms = [("f32", torch.float32, 1024, 1024, 1024), ("bf16", torch.bfloat16, 1024, 1024, 1024),
             ("f16", torch.float16, 4096, 4096, 512), ("bf16", torch.bfloat16, 4096, 4096, 512),
             ("f32", torch.float32, 4096, 4096, 512), ("f16", torch.float16, 4096, 14336, 512),
             ("f16", torch.float16, 4096, 4096, 1), ("f16", torch.float16, 4096, 14336, 1)]
    for name, dt, K, N, M in gemms:
        w = torch.randn(N, K, dtype=dt, device=dev)
        x = torch.randn(M, K, dtype=dt, device=dev)
        best, med = timeit(lambda: torch.matmul(x, w.t()))
        emit(f"cublas {name} K={K} N={N} M={M}", best, med,
             tflops=round(2 * K * N * M / best / 1e9, 2))

    # Attention, f16, GQA 32/8, head_dim 128.
    for tq, tk, causal in [(1, 4096, False), (512, 512, True), (4096, 4096, True)]:
        q = torch.randn(1, 32, tq, 128, dtype=torch.float16, device=dev)
        k = torch.randn(1, 8, tk, 128, dtype=torch.float16, device=dev)
        v = torch.randn(1, 8, tk, 128, dtype=torch.float16, device=dev)
        fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        best, med = timeit(fn)
        emit(f"sdpa f16 Tq={tq} Tk={tk} Hq=32 Hkv=8 causal={int(causal)}", best, med)
    return 0


if __name__ == "__main__":
    sys.exit(main())
