#!/usr/bin/env python3
"""`loom rag index` / `loom rag search "text"` end to end with the bundled MiniLM:

    rag_text_cli.py LOOM WORKDIR

Markdown, text and JSONL documents; each hit's text must equal the source's
bytes at its offsets (Markdown/text) or the JSONL object's text slice; a query
finds the document that answers it; re-indexing skips unchanged sources,
re-indexes a changed one, drops a removed one and adds a new one; a source
changed after indexing gives a warning and no text; an index from another
encoder is refused; `loom rag ask` lists the top hits as numbered sources and
refuses a context too small for the question and the answer. Exit 77 (skip) without the encoder.
"""
import json
import os
import shutil
import subprocess
import sys


def mmr_ref(v, sim, lam, k):
    """Maximal marginal relevance, the textbook greedy loop (numpy)."""
    picked = []
    for _ in range(min(k, len(sim))):
        best, bv = -1, None
        for i in range(len(sim)):
            if i in picked:
                continue
            red = max(float(v[i] @ v[j]) for j in picked) if picked else 0.0
            s = lam * float(sim[i]) - ((1 - lam) * red if picked else 0.0)
            if bv is None or s > bv:
                best, bv = i, s
        picked.append(best)
    return picked


def rerank_mmr(loom, work, check):
    """--rerank N / --mmr LAMBDA against numpy on loom's own embeddings."""
    import numpy as np
    jl = os.path.join(work, "redundant.jsonl")
    texts = ["Cats purr when they are content and relaxed.",
             "A content cat will often purr while relaxing.",
             "Purring is how a relaxed, happy cat shows contentment.",
             "Kittens love to chase balls of yarn.",
             "Lions are large cats living in prides on the savanna.",
             "Dogs bark at strangers near the house.",
             "The stock market fell sharply on Monday.",
             "Tigers are solitary striped cats of Asia."]
    with open(jl, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t, "title": t.split()[0]}) + "\n")
    ix = os.path.join(work, "redundant.lvi")
    p = subprocess.run([loom, "rag", "index", "--docs", jl, "-o", ix, "--exact"], capture_output=True, text=True)
    check(p.returncode == 0, "index redundant: %s" % p.stderr)
    q, n = "why do cats purr", 6

    def hits(*extra):
        p = subprocess.run([loom, "rag", "search", "--index", ix, q, "--json", *extra], capture_output=True, text=True)
        check(p.returncode == 0, "search %s: %s" % (extra, p.stderr))
        return [json.loads(l) for l in p.stdout.splitlines()]

    cand = hits("-k", str(n), "--exact")
    ct = [h["text"] for h in cand]
    p = subprocess.run([loom, "embed", "--json", q] + ct, capture_output=True, text=True)
    check(p.returncode == 0, "embed: %s" % p.stderr)
    e = np.array([json.loads(l)["embedding"] for l in p.stdout.splitlines()], dtype=np.float64)
    qv, v = e[0], e[1:]
    sim = v @ qv
    want = [ct[i] for i in sorted(range(n), key=lambda i: (-sim[i], i))[:3]]
    got = hits("-k", "3", "--rerank", str(n), "--exact")
    check([h["text"] for h in got] == want, "rerank: %s, numpy %s" % ([h["text"] for h in got], want))
    for h in got:
        check(abs(h["score"] - sim[ct.index(h["text"])]) < 1e-4, "rerank score %s" % h)
    # every lambda, the whole order (k = n): a wrong weight or sign shows somewhere
    for lam in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        want = [ct[i] for i in mmr_ref(v, sim, lam, n)]
        got = [h["text"] for h in hits("-k", str(n), "--rerank", str(n), "--mmr", str(lam), "--exact")]
        check(got == want, "mmr %.1f: %s, numpy %s" % (lam, got, want))
    plain = [h["text"] for h in hits("-k", "4", "--exact")]
    mmr3 = [h["text"] for h in hits("-k", "4", "--rerank", str(n), "--mmr", "0.3", "--exact")]
    check(plain != mmr3, "mmr 0.3 changed nothing on near-duplicates: the test tests nothing")


def main():
    loom, work = os.path.abspath(sys.argv[1]), sys.argv[2]
    cache = os.environ.get("LOOM_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "loom", "models")
    if not os.path.exists(os.path.join(cache, "all-MiniLM-L6-v2", "config.json")):
        print("SKIP: all-MiniLM-L6-v2 not in the model cache (scripts/fetch-models.sh)")
        return 77
    shutil.rmtree(work, ignore_errors=True)
    docs = os.path.join(work, "docs")
    os.makedirs(os.path.join(docs, "sub"))
    files = {
        "cats.md": "# Cats\n\nCats are small carnivorous felines. A cat purrs when it is content.\n",
        "sub/volcano.txt": "Volcanoes erupt molten rock called lava. Magma chambers lie below.\n",
        "bread.md": "# Baking\n\nBread dough rises because yeast produces carbon dioxide.\n",
        "ignored.bin": "not a document",
    }
    for name, text in files.items():
        with open(os.path.join(docs, name), "w") as f:
            f.write(text)
    ix = os.path.join(work, "ix.lvi")
    fails = []

    def run(*a):
        return subprocess.run([loom, "rag"] + list(a), capture_output=True, text=True)

    def search(q, k=1, idx=ix):
        p = run("search", "--index", idx, q, "-k", str(k), "--json")
        if p.returncode:
            fails.append("search %r: %s" % (q, p.stderr))
            return [], p.stderr
        return [json.loads(l) for l in p.stdout.splitlines()], p.stderr

    def check(cond, what):
        if not cond:
            fails.append(what)

    p = run("index", "--docs", docs, "-o", ix, "--chunk", "16", "--overlap", "4")
    check(p.returncode == 0, "index: %s" % p.stderr)
    check("3 sources" in p.stdout, "index: want 3 sources: %s" % p.stdout)
    # the settings are in the file: shown, reused, and others refused in one line
    p = run("info", "--index", ix)
    check("text: chunk 16 overlap 4 tokens, encoder 384-d" in p.stdout, "info: %s" % p.stdout)
    p = run("index", "--docs", docs, "-o", ix)
    check(p.returncode == 0 and "3 unchanged" in p.stdout and "chunk 16 overlap 4" in p.stdout,
          "recorded settings not reused: %s %s" % (p.stdout, p.stderr))
    for extra, want in ((["--chunk", "32"], "not --chunk 32;"), (["--overlap", "2"], "not --overlap 2;")):
        p = run("index", "--docs", docs, "-o", ix, *extra)
        check(p.returncode == 1 and "was made with --chunk 16 --overlap 4, " + want in p.stderr and
              p.stderr.count("\n") == 1, "other settings not refused: %r" % p.stderr)
    for q, want in (("why does a cat purr", "cats.md"), ("lava from an eruption", "volcano.txt"),
                    ("yeast makes dough rise", "bread.md")):
        hits, _ = search(q)
        check(hits and hits[0]["source"].endswith(want), "%r -> %s, want %s" % (q, hits, want))
        for h in hits:
            raw = open(h["source"], "rb").read()
            check(raw[h["byte_begin"]:h["byte_end"]].decode() == h["text"],
                  "hit text is not the source's bytes at its offsets: %s" % h)
    # incremental: one changed, one removed, one new, one unchanged
    with open(os.path.join(docs, "cats.md"), "a") as f:
        f.write("\nKittens are young cats that sleep most of the day.\n")
    os.remove(os.path.join(docs, "sub", "volcano.txt"))
    with open(os.path.join(docs, "moon.txt"), "w") as f:
        f.write("The Moon orbits the Earth and causes the ocean tides.\n")
    p = run("index", "--docs", docs, "-o", ix, "--chunk", "16", "--overlap", "4")
    check(p.returncode == 0 and "1 unchanged" in p.stdout, "update: %s %s" % (p.stdout, p.stderr))
    hits, _ = search("lava from an eruption", k=10)
    check(not any(h["source"].endswith("volcano.txt") for h in hits), "removed source still found")
    hits, _ = search("what causes tides")
    check(hits and hits[0]["source"].endswith("moon.txt"), "new source not found: %s" % hits)
    hits, _ = search("young kittens sleeping")
    check(hits and hits[0]["source"].endswith("cats.md") and "Kittens" in hits[0]["text"],
          "changed source not re-indexed: %s" % hits)
    # a source changed after indexing: warning, no text
    with open(os.path.join(docs, "moon.txt"), "w") as f:
        f.write("Changed.\n")
    hits, err = search("what causes tides")
    check(hits and hits[0]["text"] == "" and "changed since it was indexed" in err,
          "stale source: %s %s" % (hits, err))
    # JSONL documents
    jl = os.path.join(work, "docs.jsonl")
    with open(jl, "w") as f:
        f.write(json.dumps({"text": "Penguins are flightless birds of the southern seas.",
                            "title": "Penguins"}) + "\n\n")
        f.write(json.dumps({"text": "Rust is a systems programming language.", "title": "Rust"}) + "\n")
    ix2 = os.path.join(work, "ix2.lvi")
    p = run("index", "--docs", jl, "-o", ix2, "--exact")
    check(p.returncode == 0, "jsonl index: %s" % p.stderr)
    hits, _ = search("birds that cannot fly", idx=ix2)
    check(hits and hits[0]["source"] == jl + "#1" and hits[0]["title"] == "Penguins" and
          hits[0]["text"].startswith("Penguins"), "jsonl: %s" % hits)
    hits, _ = search("a programming language", idx=ix2)
    check(hits and hits[0]["source"] == jl + "#3", "jsonl line numbers: %s" % hits)
    # rag ask (the default model: SmolLM2 when fetched, else the random-weight one):
    # the sources listed are the top hits, numbered; a context too small is refused
    p = run("ask", "--index", ix2, "birds that cannot fly", "-k", "2", "-n", "8", "--exact")
    check(p.returncode == 0 and "\nSources:\n[1] %s#1 " % jl in p.stdout and
          "[2] %s#3 " % jl in p.stdout, "ask: %s %s" % (p.stdout, p.stderr))
    p = run("ask", "--index", ix2, "birds that cannot fly", "-n", "60", "--ctx", "64")
    check(p.returncode == 1 and "passes the context" in p.stderr, "ask budget: %s" % p.stderr)
    # another encoder for an existing index: refused
    p = run("index", "--docs", jl, "-o", ix2, "-m", os.path.join(cache, "all-MiniLM-L6-v2"))
    check(p.returncode == 1 and "was made with encoder" in p.stderr, "encoder mismatch: %s" % p.stderr)
    rerank_mmr(loom, work, check)
    for f in fails:
        print("FAIL:", f)
    print("rag_text_cli: %d failures" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
