#!/usr/bin/env python3
"""loom's vector index vs FAISS and hnswlib on the same vectors and threads.

  rag_bench.py LOOM [--n 100000] [--dim 384] [--nq 1000] [--threads 2]
               [--M 16] [--efc 200] [--ef 16,32,64,128,256] [--workdir DIR]

Data: a Gaussian mixture (n_centres = n/100 centres, noise sigma 0.6 per
coordinate around unit-variance centres), each vector L2-normalised; the
queries are drawn from the same mixture (not from the base set). Uniform
noise would make neighbours meaningless; real sentence embeddings cluster.
Ground truth: FAISS IndexFlatIP (exact). Metric: inner product (= cosine).
Same thread count for every engine. Wall time and process CPU time are both
measured (on a shared machine wall time depends on the neighbours; CPU time
much less). Prints Markdown tables and writes DIR/results.json.

Needs numpy, faiss-cpu and hnswlib (pip install faiss-cpu hnswlib numpy).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def mixture(n, d, n_centres, sigma, rng, centres=None):
    if centres is None:
        centres = rng.standard_normal((n_centres, d)).astype(np.float32)
    lab = rng.integers(0, len(centres), n)
    x = centres[lab] + sigma * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), centres


def recall(found, gt, k):
    hit = 0
    for f, g in zip(found, gt):
        hit += len(set(int(v) for v in f[:k]) & set(int(v) for v in g[:k]))
    return hit / (len(gt) * k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loom")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--ef", default="16,32,64,128,256")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/loom_rag_bench")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    import faiss
    import hnswlib

    T, k, efs = a.threads, a.k, [int(e) for e in a.ef.split(",")]
    rng = np.random.default_rng(a.seed)
    xb, centres = mixture(a.n, a.dim, max(a.n // 100, 10), 0.6, rng)
    xq, _ = mixture(a.nq, a.dim, 0, 0.6, rng, centres)
    base, qf, gtf = (os.path.join(a.workdir, f) for f in ("base.npy", "queries.npy", "gt.npy"))
    np.save(base, xb)
    np.save(qf, xq)
    faiss.omp_set_num_threads(T)
    flat = faiss.IndexFlatIP(a.dim)
    flat.add(xb)
    t0, c0 = time.perf_counter(), time.process_time()
    _, gt = flat.search(xq, k)
    t_flat, c_flat = time.perf_counter() - t0, time.process_time() - c0
    np.save(gtf, gt.astype(np.int64))
    rows = [dict(engine="faiss", kind="exact", recall=1.0, qps=a.nq / t_flat, qps_cpu=a.nq / c_flat, threads=T)]

    # FAISS HNSW
    fh = faiss.IndexHNSWFlat(a.dim, a.M, faiss.METRIC_INNER_PRODUCT)
    fh.hnsw.efConstruction = a.efc
    t0, c0 = time.perf_counter(), time.process_time()
    fh.add(xb)
    builds = {"faiss": time.perf_counter() - t0}
    build_cpu = {"faiss": time.process_time() - c0}
    for ef in efs:
        fh.hnsw.efSearch = ef
        t0, c0 = time.perf_counter(), time.process_time()
        _, I = fh.search(xq, k)
        t, c = time.perf_counter() - t0, time.process_time() - c0
        rows.append(dict(engine="faiss", kind="hnsw", ef=ef, recall=recall(I, gt, k), qps=a.nq / t,
                         qps_cpu=a.nq / c, threads=T))

    # hnswlib
    hl = hnswlib.Index(space="ip", dim=a.dim)
    hl.init_index(max_elements=a.n, ef_construction=a.efc, M=a.M, random_seed=a.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    hl.add_items(xb, np.arange(a.n), num_threads=T)
    builds["hnswlib"] = time.perf_counter() - t0
    build_cpu["hnswlib"] = time.process_time() - c0
    for ef in efs:
        hl.set_ef(max(ef, k))
        t0, c0 = time.perf_counter(), time.process_time()
        I, _ = hl.knn_query(xq, k=k, num_threads=T)
        t, c = time.perf_counter() - t0, time.process_time() - c0
        rows.append(dict(engine="hnswlib", kind="hnsw", ef=ef, recall=recall(I, gt, k), qps=a.nq / t,
                         qps_cpu=a.nq / c, threads=T))

    # loom
    idx = os.path.join(a.workdir, "loom.lvi")
    p = subprocess.run([a.loom, "rag", "build", "--vectors", base, "-o", idx, "--metric", "ip",
                        "--hnsw", "%d,%d" % (a.M, a.efc), "--threads", str(T)],
                       capture_output=True, text=True, check=True)
    b = json.loads(p.stdout.strip().splitlines()[-1])
    builds["loom"], build_cpu["loom"] = b["build_s"], b["build_cpu_s"]
    p = subprocess.run([a.loom, "rag", "bench", "--index", idx, "--queries", qf, "--gt", gtf,
                        "-k", str(k), "--ef", a.ef, "--threads", str(T)],
                       capture_output=True, text=True, check=True)
    rows += [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]

    print("n=%d dim=%d nq=%d threads=%d M=%d efConstruction=%d k=%d" % (a.n, a.dim, a.nq, T, a.M, a.efc, k))
    print()
    print("| engine | build s (wall) | vs faiss | build CPU s | vs faiss |")
    print("|---|---:|---:|---:|---:|")
    for e in ("loom", "faiss", "hnswlib"):
        print("| %s | %.2f | %.2f | %.2f | %.2f |" % (e, builds[e], builds[e] / builds["faiss"], build_cpu[e],
                                                     build_cpu[e] / build_cpu["faiss"]))
    print()
    print("| engine | search | recall@%d | QPS (wall) | queries per CPU-second |" % k)
    print("|---|---|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r.get("ef", 0), r["engine"])):
        print("| %s | %s | %.4f | %.0f | %.0f |" % (r["engine"], "ef %d" % r["ef"] if "ef" in r else "exact",
                                                   r["recall"], r["qps"], r["qps_cpu"]))
    with open(os.path.join(a.workdir, "results.json"), "w") as f:
        json.dump(dict(args=vars(a), builds=builds, build_cpu=build_cpu, rows=rows), f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
