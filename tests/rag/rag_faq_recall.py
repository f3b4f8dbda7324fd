#!/usr/bin/env python3
"""Retrieval quality on a real corpus: the Python FAQ (Debian python3.11-doc).

    rag_faq_recall.py LOOM WORKDIR [--full] [--ref] [--min-r1 X] [--min-r5 X]

Each FAQ question is an <h2>/<h3> heading followed by its answer. The pages
(the CI subset: faq/general.html and faq/gui.html, plus three tutorial and
library pages as distractors; --full: every faq/*.html except the index,
plus the same distractors) are indexed by `loom rag index` (minilm, default
chunking, exact search); the ground truth is found here, independently of
loom's HTML cleaner, with Python's html.parser: a question's relevant chunks
are those whose text holds the first 60 characters of the answer's first
paragraph (white space collapsed). Each question text is the query; recall@1
and recall@5 count queries with a relevant chunk in the top 1 / top 5
(`loom rag search --query-file --json --exact`).

--ref also embeds the same chunks (loom's --dump-chunks) and questions with
sentence-transformers (the same all-MiniLM-L6-v2 directory) and searches
them with FAISS IndexFlatIP: the same figures in the same run, and a failure
when loom is more than 1 point below (developer run: /work/pyref/bin/python,
CI has no torch). Exit 77 (skip) when the docs or the encoder are missing.
"""
import html
import html.parser
import json
import os
import re
import subprocess
import sys

DOC = "/usr/share/doc/python3.11/html"
SUBSET = ["faq/general.html", "faq/gui.html"]
DISTRACT = ["tutorial/appetite.html", "tutorial/whatnow.html", "library/keyword.html"]


def norm(s):
    return re.sub(r"\s+", " ", s).strip()


class FaqParser(html.parser.HTMLParser):
    """(question, first answer paragraph) pairs of one Sphinx FAQ page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.pairs, self.head, self.par = [], None, None
        self.in_h = self.in_p = False
        self.skip = 0  # inside <a class="headerlink">
        self.question = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("h2", "h3"):
            self.in_h, self.head, self.question = True, [], None
        elif tag == "a" and "headerlink" in (a.get("class") or ""):
            self.skip += 1
        elif tag == "p" and self.question and not self.in_p:
            self.in_p, self.par = True, []
        elif tag in ("h1", "h4"):
            self.question = None

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self.in_h:
            self.in_h = False
            self.question = norm("".join(self.head))
        elif tag == "a" and self.skip:
            self.skip -= 1
        elif tag == "p" and self.in_p:
            self.in_p = False
            text = norm("".join(self.par))
            if self.question and len(text) >= 20:
                self.pairs.append((self.question, text))
            self.question = None

    def handle_data(self, d):
        if self.skip:
            return
        if self.in_h:
            self.head.append(d)
        elif self.in_p:
            self.par.append(d)


def questions(path):
    p = FaqParser()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    return p.pairs


def recall(ranked, rel, k):
    return sum(1 for r, g in zip(ranked, rel) if set(r[:k]) & g) / len(rel)


def find_minilm():
    cache = os.environ.get("LOOM_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "loom", "models")
    d = os.path.join(cache, "all-MiniLM-L6-v2")
    return d if os.path.exists(os.path.join(d, "config.json")) else None


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__)
        return 2
    loom, work = os.path.abspath(args[0]), args[1]
    full, ref = "--full" in args, "--ref" in args
    floor = {"--min-r1": 0.0, "--min-r5": 0.0}
    for k in floor:
        if k in args:
            floor[k] = float(args[args.index(k) + 1])
    if not os.path.isdir(os.path.join(DOC, "faq")):
        print("SKIP: %s/faq missing (apt install python3.11-doc)" % DOC)
        return 77
    enc = find_minilm()
    if not enc:
        print("SKIP: all-MiniLM-L6-v2 not in the model cache (scripts/fetch-models.sh)")
        return 77
    faq = SUBSET
    if full:
        faq = sorted("faq/" + f for f in os.listdir(os.path.join(DOC, "faq"))
                     if f.endswith(".html") and f != "index.html")
    os.makedirs(work, exist_ok=True)
    docs = os.path.join(work, "docs")
    os.makedirs(docs, exist_ok=True)
    for f in os.listdir(docs):
        os.remove(os.path.join(docs, f))
    qa = []
    for rel in faq + DISTRACT:
        name = rel.replace("/", "_")
        with open(os.path.join(DOC, rel), "rb") as s, open(os.path.join(docs, name), "wb") as d:
            d.write(s.read())
        if rel in faq:
            qa += questions(os.path.join(DOC, rel))
    ix, dump = os.path.join(work, "faq.lvi"), os.path.join(work, "chunks.jsonl")
    if os.path.exists(ix):
        os.remove(ix)
    p = subprocess.run([loom, "rag", "index", "--docs", docs, "-o", ix, "-m", "minilm",
                        "--exact", "--dump-chunks", dump], capture_output=True, text=True)
    print(p.stdout.strip())
    if p.returncode:
        print(p.stderr)
        return 1
    chunks = [json.loads(l) for l in open(dump, encoding="utf-8")]
    ntext = [norm(c["text"]) for c in chunks]
    qs, rel = [], []
    for q, a in qa:
        snip = a[:60]
        g = {i for i, t in enumerate(ntext) if snip in t}
        if g:
            qs.append(q)
            rel.append(g)
    print("%d questions, %d with their answer found in a chunk; %d chunks" %
          (len(qa), len(qs), len(chunks)))
    if len(qs) < 0.9 * len(qa) or len(qs) < 10:
        print("FAIL: too few answers found in the chunks (chunking or the HTML cleaner broke)")
        return 1
    qfile = os.path.join(work, "questions.txt")
    with open(qfile, "w", encoding="utf-8") as f:
        f.write("\n".join(qs) + "\n")
    p = subprocess.run([loom, "rag", "search", "--index", ix, "--query-file", qfile, "-k", "5",
                        "--json", "--exact"], capture_output=True, text=True)
    if p.returncode:
        print(p.stderr)
        return 1
    ranked = [[] for _ in qs]
    for line in p.stdout.splitlines():
        h = json.loads(line)
        ranked[h["query"]].append(h["id"])
    r1, r5 = recall(ranked, rel, 1), recall(ranked, rel, 5)
    print("loom: recall@1 %.4f recall@5 %.4f (%d queries)" % (r1, r5, len(qs)))
    ok = r1 >= floor["--min-r1"] and r5 >= floor["--min-r5"]
    if not ok:
        print("FAIL: below the floor recall@1 >= %.2f, recall@5 >= %.2f" %
              (floor["--min-r1"], floor["--min-r5"]))
    if ref:
        import faiss
        import numpy as np
        from sentence_transformers import SentenceTransformer
        m = SentenceTransformer(enc, device="cpu")
        cv = m.encode([c["text"] for c in chunks], batch_size=32, normalize_embeddings=True)
        qv = m.encode(qs, batch_size=32, normalize_embeddings=True)
        fi = faiss.IndexFlatIP(cv.shape[1])
        fi.add(np.ascontiguousarray(cv, dtype=np.float32))
        _, I = fi.search(np.ascontiguousarray(qv, dtype=np.float32), 5)
        pr = [list(r) for r in I]
        p1, p5 = recall(pr, rel, 1), recall(pr, rel, 5)
        print("sentence-transformers + FAISS: recall@1 %.4f recall@5 %.4f" % (p1, p5))
        if r1 < p1 - 0.01 or r5 < p5 - 0.01:
            print("FAIL: loom is more than 1 point below the reference")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
