#!/usr/bin/env python3
"""Sentences/s of `loom embed` against sentence-transformers (PyTorch), same
model, sentences, batch size and threads, in one run (docs/PERF.md).

    /work/pyref/bin/python scripts/bench_embed.py build/loom [--model DIR]
        [--threads 2] [--batch 32] [--n 1024] [--repeats 3]

Sentences: the paragraphs of the Python FAQ pages of Debian's python3.11-doc
(/usr/share/doc/python3.11/html/faq), split at sentence ends, the first N;
without that package, the repository's Markdown files. Each repeat times
both, alternating (best of the repeats is reported, since other processes
share the machine); loom's time excludes model loading (`loom embed
--timing`), sentence-transformers' is model.encode() alone. Also prints the
worst cosine between the two sets of embeddings.
"""
import argparse
import glob
import html
import os
import re
import subprocess
import sys
import time

import numpy as np


def sentences(n):
    texts = []
    faq = sorted(glob.glob("/usr/share/doc/python3.11/html/faq/*.html"))
    if faq:
        for path in faq:
            raw = open(path, encoding="utf-8", errors="replace").read()
            for para in re.findall(r"<p>(.*?)</p>", raw, re.S):
                texts.append(html.unescape(re.sub(r"<[^>]+>", "", para)))
        source = "python3.11-doc FAQ"
    else:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for path in sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True)):
            texts.extend(open(path, encoding="utf-8").read().split("\n\n"))
        source = "the repository's docs/*.md"
    out = []
    for t in texts:
        for s in re.split(r"(?<=[.!?])\s+", " ".join(t.split())):
            if len(s) > 10:
                out.append(s)
    return out[:n], source


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loom")
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/loom/models/all-MiniLM-L6-v2"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(a.threads)
    sents, source = sentences(a.n)
    words = sum(len(s.split()) for s in sents)
    print("%d sentences (%d words) from %s; batch %d; %d threads; torch %s"
          % (len(sents), words, source, a.batch, a.threads, torch.__version__))
    st = SentenceTransformer(a.model, device="cpu")
    st.encode(sents[:64], batch_size=a.batch)  # warm-up
    env = dict(os.environ, LOOM_THREADS=str(a.threads))
    inp = "".join(s + "\n" for s in sents).encode()
    best_st, best_loom, cpu_st, cpu_loom, ref, got = 1e30, 1e30, 1e30, 1e30, None, None
    for r in range(a.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        ref = st.encode(sents, batch_size=a.batch, convert_to_numpy=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        best_st, cpu_st = min(best_st, wall), min(cpu_st, cpu)
        p = subprocess.run([a.loom, "--backend", "cpu", "embed", "-m", a.model, "-b",
                            str(a.batch), "--timing"], input=inp, capture_output=True, env=env,
                           check=True)
        m = re.search(r"in ([0-9.]+) s \(cpu time ([0-9.]+) s\)", p.stderr.decode())
        lw, lc = float(m.group(1)), float(m.group(2))
        best_loom, cpu_loom = min(best_loom, lw), min(cpu_loom, lc)
        got = np.array([[float(x) for x in line.split()] for line in p.stdout.decode().splitlines()],
                       dtype=np.float32)
        print("  repeat %d: sentence-transformers %.3f s (cpu %.3f s), loom %.3f s (cpu %.3f s)"
              % (r, wall, cpu, lw, lc))
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    n = len(sents)
    print("sentence-transformers: %.1f sentences/s" % (n / best_st))
    print("loom embed (cpu):      %.1f sentences/s" % (n / best_loom))
    print("ratio loom / sentence-transformers: %.2fx by wall time (best of %d), %.2fx by cpu "
          "time; worst cosine %.7f" % (best_st / best_loom, a.repeats, cpu_st / cpu_loom, cos.min()))


if __name__ == "__main__":
    sys.exit(main())
