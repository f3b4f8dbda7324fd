#!/usr/bin/env python3
"""HNSW search only, in alternating rounds: FAISS against one or more loom builds.

Reuses what an earlier `bench/rag_bench.py --workdir DIR` left in DIR (base.npy,
queries.npy, gt.npy, loom.lvi), so a search-side change can be measured at 1M
vectors without rebuilding every graph (the three builds take ~25 min there).
The FAISS graph is built once with the same M / efConstruction and saved as
DIR/faiss.index. Each round searches FAISS at every efSearch, then runs
`loom rag bench` for each binary in turn; the host's speed drifts, so compare
the rounds side by side, not the best of one against the best of another.

    python3 bench/rag_search_ab.py --workdir /tmp/loom_rag_bench --ef 32,48,64 \
        --rounds 3 OLD/loom NEW/loom

Each binary needs its own libloom.so beside it (the RUNPATH starts at $ORIGIN).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from rag_bench import recall  # same directory; the same recall@k as the full benchmark


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("loom", nargs="+", help="loom binaries to compare")
    ap.add_argument("--workdir", default="/tmp/loom_rag_bench")
    ap.add_argument("--ef", default="16,32,48,64,96,128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--index", help="loom index to search (default WORKDIR/loom.lvi)")
    a = ap.parse_args()
    import faiss

    w = a.workdir
    lvi = a.index or os.path.join(w, "loom.lvi")
    for f in ("queries.npy", "gt.npy", lvi):
        if not os.path.exists(os.path.join(w, f)):
            sys.exit("rag_search_ab: %s has no %s; run bench/rag_bench.py --workdir %s first" % (w, f, w))
    efs = [int(e) for e in a.ef.split(",")]
    xq = np.load(os.path.join(w, "queries.npy"))
    gt = np.load(os.path.join(w, "gt.npy"))
    faiss.omp_set_num_threads(a.threads)
    fpath = os.path.join(w, "faiss.index")
    if os.path.exists(fpath):
        fh = faiss.read_index(fpath)
    else:
        xb = np.load(os.path.join(w, "base.npy"))
        fh = faiss.IndexHNSWFlat(xb.shape[1], a.M, faiss.METRIC_INNER_PRODUCT)
        fh.hnsw.efConstruction = a.efc
        t0 = time.perf_counter()
        fh.add(xb)
        print("faiss build %.1f s (M %d, efConstruction %d)" % (time.perf_counter() - t0, a.M, a.efc),
              flush=True)
        del xb
        faiss.write_index(fh, fpath + ".tmp")
        os.replace(fpath + ".tmp", fpath)

    res = {}  # (engine, ef) -> [(recall, qps) per round]
    for r in range(a.rounds):
        for ef in efs:
            fh.hnsw.efSearch = ef
            t0 = time.perf_counter()
            _, I = fh.search(xq, a.k)
            t = time.perf_counter() - t0
            res.setdefault(("faiss", ef), []).append((recall(I, gt, a.k), len(xq) / t))
        for i, lb in enumerate(a.loom):
            p = subprocess.run([lb, "rag", "bench", "--index", lvi, "--queries",
                                os.path.join(w, "queries.npy"), "--gt", os.path.join(w, "gt.npy"), "-k",
                                str(a.k), "--ef", a.ef, "--threads", str(a.threads)],
                               capture_output=True, text=True, check=True)
            for line in p.stdout.splitlines():
                j = json.loads(line)
                if j["kind"] == "hnsw":
                    res.setdefault(("loom%d" % i, j["ef"]), []).append((j["recall"], j["qps"]))
        print("round %d of %d done" % (r + 1, a.rounds), file=sys.stderr, flush=True)

    names = ["faiss"] + ["loom%d" % i for i in range(len(a.loom))]
    for i, lb in enumerate(a.loom):
        print("loom%d = %s" % (i, lb))
    print()
    print("| efSearch | engine | recall@%d | QPS per round | median |" % a.k)
    print("|---:|---|---:|---|---:|")
    for ef in sorted(set(efs)):
        for e in names:
            v = res[(e, ef)]
            q = sorted(x for _, x in v)
            print("| %d | %s | %.4f | %s | %.0f |" % (ef, e, v[0][0], " ".join("%.0f" % x for _, x in v),
                                                     q[len(q) // 2]))


if __name__ == "__main__":
    sys.exit(main())
