#!/usr/bin/env python3
"""loom_perplexity_tokens against numpy (ctest perplexity_numpy).

  check_perplexity.py LOOM PPL_DUMP WORKDIR

Makes a small random-weight model (loom init-model --preset tiny-dense), a
seeded random token sequence, and, here in Python, the windows llama.cpp's
llama-perplexity evaluates (non-overlapping, CTX tokens, the tail dropped,
--chunks limit, the first token replaced by BOS when BOS is added).
ppl_dump (C) evaluates exactly those windows with loom's forward pass and
writes their logits, then what loom_perplexity_tokens reports on the raw
sequence. Here numpy scores positions CTX//2 .. CTX-2 of each window
(predicting the next original token), with log-softmax in float64, and
computes PPL = exp(mean nll) and llama.cpp's error estimate
PPL * sqrt((mean nll^2 - mean nll^2) / (count - 1)). They must agree to 1e-6
relative (float32 exp in llama.cpp's sum; nothing else differs). Cases: even
and odd CTX, all windows and a --chunks limit, with and without BOS; and a
text too short for 2 windows must be refused.
"""
import os
import subprocess
import sys

import numpy as np


def windows(tokens, ctx, chunks, add_bos, bos):
    n_chunk = len(tokens) // ctx
    if chunks > 0:
        n_chunk = min(n_chunk, chunks)
    ws = []
    for c in range(n_chunk):
        w = list(tokens[c * ctx:(c + 1) * ctx])
        if add_bos:
            w[0] = bos
        ws.append(w)
    return n_chunk, np.array(ws, dtype=np.int32)


def reference(tokens, logits, ctx, n_chunk):
    first = ctx // 2
    nll = []
    for c in range(n_chunk):
        lg = logits[c].astype(np.float64)
        for j in range(first, ctx - 1):
            row = lg[j]
            mx = row.max()
            lse = mx + np.log(np.exp(row - mx).sum())
            nll.append(lse - row[tokens[c * ctx + j + 1]])
    nll = np.array(nll)
    mean, mean2 = nll.mean(), (nll * nll).mean()
    ppl = np.exp(mean)
    return ppl, ppl * np.sqrt((mean2 - mean * mean) / (len(nll) - 1)), mean, len(nll)


def main():
    loom, dump, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "tiny-dense.gguf")
    subprocess.run([loom, "init-model", "--preset", "tiny-dense", "--type", "f32", "-o", model],
                   check=True, stdout=subprocess.DEVNULL)
    vocab, bos = 128256, 128000  # the Llama-3 vocabulary of loom's presets
    rng = np.random.default_rng(7)
    fails = 0
    for ctx, chunks, add_bos, n_tok in [(32, 0, True, 3 * 32 + 11), (33, 0, False, 2 * 33 + 5),
                                        (32, 2, False, 4 * 32), (20, 0, True, 2 * 20)]:
        # a text with structure: a repeated phrase, so the model's guesses vary
        tokens = rng.integers(0, 1000, size=n_tok).astype(np.int32)
        tokens[n_tok // 2:] = tokens[:n_tok - n_tok // 2]
        n_chunk, ws = windows(tokens, ctx, chunks, add_bos, bos)
        paths = [os.path.join(work, f) for f in ("tokens.bin", "windows.bin", "out.bin")]
        tokens.tofile(paths[0])
        ws.tofile(paths[1])
        subprocess.run([dump, model, *paths, str(ctx), str(chunks), str(int(add_bos))],
                       check=True)
        raw = np.fromfile(paths[2], dtype=np.uint8)
        nlog = n_chunk * ctx * vocab * 4
        logits = raw[:nlog].view(np.float32).reshape(n_chunk, ctx, vocab)
        got = raw[nlog:nlog + 24].view(np.float64)
        k = raw[nlog + 24:nlog + 40].view(np.int64)
        ppl, err, mean, count = reference(tokens, logits, ctx, n_chunk)
        ok = (abs(got[0] - ppl) <= 1e-6 * ppl and abs(got[1] - err) <= 1e-5 * err + 1e-12
              and abs(got[2] - mean) <= 1e-6 * abs(mean) and k[0] == n_chunk and k[1] == count)
        print("ctx %d chunks %d bos %d: loom PPL %.6f +/- %.6f (%d windows, %d scored), "
              "numpy %.6f +/- %.6f (%d, %d) %s" % (ctx, chunks, add_bos, got[0], got[1], k[0],
                                                   k[1], ppl, err, n_chunk, count,
                                                   "ok" if ok else "MISMATCH"))
        fails += not ok
    # too short: 2*ctx tokens needed, as llama.cpp
    tokens = np.arange(63, dtype=np.int32)
    tokens.tofile(os.path.join(work, "tokens.bin"))
    np.zeros(0, dtype=np.int32).tofile(os.path.join(work, "windows.bin"))
    p = subprocess.run([dump, model, os.path.join(work, "tokens.bin"),
                        os.path.join(work, "windows.bin"), os.path.join(work, "out.bin"),
                        "32", "0", "0"], capture_output=True, text=True)
    short_ok = p.returncode != 0 and "has 63 tokens" in p.stderr and "at least 64" in p.stderr
    print("63 tokens with ctx 32: %s" % ("refused: " + p.stderr.strip() if short_ok else "ACCEPTED"))
    fails += not short_ok
    print("FAIL" if fails else "PASS")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
