#!/usr/bin/env python3
"""`loom embed` end to end on the tiny BERT of tests/golden/encoder (ctest embed_cli).

  embed_cli.py LOOM SOURCE_DIR

Checks, against the goldens of scripts/gen_encoder_golden.py (no numpy needed):
  * TEXT arguments, stdin lines and --json give the same vectors, in input
    order (the command sorts texts by length into batches internally), each
    at cosine >= 0.9999 with PyTorch's and of norm 1, for batch sizes 1, 3, 32;
  * --max-tokens changes the embedding of a long text (truncation is applied);
  * errors: a missing encoder directory and an encoder 'minilm' not installed
    exit 1 with one line naming the problem; an empty stdin prints nothing.
"""
import json
import math
import os
import struct
import subprocess
import sys


def read_tok(path):
    b = open(path, "rb").read()
    n, at, out = struct.unpack_from("<I", b, 0)[0], 4, []
    for _ in range(n):
        ln = struct.unpack_from("<I", b, at)[0]
        at += 4
        text = b[at:at + ln]
        at += ln
        k = struct.unpack_from("<I", b, at)[0]
        at += 4 + 4 * k
        out.append(text)
    return out


def read_emb(path):
    b = open(path, "rb").read()
    n, d = struct.unpack_from("<II", b, 0)
    v = struct.unpack_from("<%df" % (n * d), b, 8)
    return [list(v[i * d:(i + 1) * d]) for i in range(n)]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def main():
    loom, src = sys.argv[1], sys.argv[2]
    gold = os.path.join(src, "tests", "golden", "encoder")
    model = os.path.join(gold, "tiny-bert")
    texts = read_tok(os.path.join(gold, "tok_tiny.bin"))
    want = read_emb(os.path.join(gold, "emb_tiny.bin"))
    # texts usable as one stdin line and as an argument: no newline, NUL, CR
    idx = [i for i, t in enumerate(texts) if not any(c in t for c in b"\n\r\x00")]
    fails = []

    def run(args, stdin=b""):
        return subprocess.run([loom, "--backend", "cpu", "embed", "-m", model] + args, input=stdin,
                              capture_output=True, timeout=120)

    for batch in ("1", "3", "32"):
        p = run(["-b", batch], b"".join(texts[i] + b"\n" for i in idx))
        lines = p.stdout.decode().splitlines()
        if p.returncode != 0 or len(lines) != len(idx):
            fails.append("stdin -b %s: rc %d, %d lines for %d texts: %s"
                         % (batch, p.returncode, len(lines), len(idx), p.stderr[:200]))
            continue
        for j, i in enumerate(idx):
            v = [float(x) for x in lines[j].split()]
            c, nrm = cos(v, want[i]), math.sqrt(sum(x * x for x in v))
            if c < 0.9999 or abs(nrm - 1) > 1e-4:
                fails.append("stdin -b %s text %d: cosine %.6f, norm %.6f" % (batch, i, c, nrm))
    args = [texts[i].decode("utf-8", "surrogateescape") for i in idx[:6]]
    p = run(["--json", "--"] + args)
    rows = [json.loads(l) for l in p.stdout.decode().splitlines()]
    if p.returncode != 0 or [r["index"] for r in rows] != list(range(len(args))):
        fails.append("--json: rc %d, indexes %s" % (p.returncode, [r.get("index") for r in rows]))
    else:
        for r, i in zip(rows, idx):
            if cos(r["embedding"], want[i]) < 0.9999:
                fails.append("--json text %d: cosine %.6f" % (i, cos(r["embedding"], want[i])))
    long_text = "repeat " * 40
    a = run(["--", long_text]).stdout.split()
    b = run(["--max-tokens", "4", "--", long_text]).stdout.split()
    if not a or a == b:
        fails.append("--max-tokens 4 did not change the embedding of a long text")
    p = run([], b"")
    if p.returncode != 0 or p.stdout:
        fails.append("empty stdin: rc %d, stdout %r" % (p.returncode, p.stdout[:80]))
    p = subprocess.run([loom, "embed", "-m", os.path.join(src, "no-such-dir"), "x"],
                       capture_output=True, timeout=60)
    if p.returncode != 1 or b"no-such-dir" not in p.stderr or p.stderr.count(b"\n") != 1:
        fails.append("missing dir: rc %d, stderr %r" % (p.returncode, p.stderr))
    env = dict(os.environ, LOOM_MODEL_CACHE=os.path.join(src, "no-such-cache"))
    p = subprocess.run([loom, "embed", "x"], capture_output=True, timeout=60, env=env)
    if p.returncode != 1 or b"fetch-models.sh" not in p.stderr:
        fails.append("minilm not installed: rc %d, stderr %r" % (p.returncode, p.stderr))
    for f in fails:
        print("FAIL", f)
    print("embed_cli: %d texts, %d failures" % (len(idx), len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
